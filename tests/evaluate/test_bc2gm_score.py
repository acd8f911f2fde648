"""The official BC2GM score (alt_eval.perl's rules) on hand-worked cases, and `forge score bc2gm`."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge.cli import main
from forge.evaluate.bc2gm_score import score_files, score_mentions
from forge.evaluate.biocreative import span_text
from forge.evaluate.errors import EvaluationError

# Non-space offsets, worked by hand:
#   S1 "The BRCA1 gene and p53 protein bind ."  T0h1e2 B3..1=7 g8..e11 a12n13d14 p15 5 3=17 p18..n24 b25..d28 .29
#   S2 "alpha beta kinase"                      a0..a4 b5..a8 k9..e14
#   S3 "no genes here ."                        (no gold mention)
#   S4 "CD4 CD8 T cells"                        C0D1 4=2 C3D4 8=5 T6 c7..s11
SENTENCES = {"S1": "The BRCA1 gene and p53 protein bind .", "S2": "alpha beta kinase", "S3": "no genes here .",
             "S4": "CD4 CD8 T cells"}
GENE = ["S1|3 7|BRCA1", "S1|15 24|p53 protein", "S2|0 4|alpha", "S2|5 14|beta kinase", "S4|0 2|CD4",
        "S4|3 5|CD8"]
ALTGENE = ["S1|3 11|BRCA1 gene", "S1|15 17|p53", "S2|0 14|alpha beta kinase", "S3|0 6|nogenes"]


def gold_folder(root: Path, genes: list[str] = GENE, alternatives: list[str] | None = ALTGENE) -> Path:
    folder = root / "gold"
    folder.mkdir(exist_ok=True)
    (folder / "test.in").write_text("".join(f"{sid} {text}\n" for sid, text in SENTENCES.items()), encoding="utf-8")
    (folder / "GENE.eval").write_text("".join(f"{line}\n" for line in genes), encoding="utf-8")
    if alternatives is not None:
        (folder / "ALTGENE.eval").write_text("".join(f"{line}\n" for line in alternatives), encoding="utf-8")
    return folder


def score(tmp_path: Path, predictions: list[str], **gold: object) -> tuple[int, int, int]:
    pred = tmp_path / "pred.eval"
    pred.write_text("".join(f"{line}\n" for line in predictions), encoding="utf-8")
    result = score_files(gold_folder(tmp_path, **gold), pred)  # type: ignore[arg-type]
    return result.tp, result.fp, result.fn


def test_the_fixture_offsets_give_their_texts() -> None:
    for line in GENE + ALTGENE:
        sid, offsets, text = line.split("|")
        start, end = (int(v) for v in offsets.split())
        assert span_text(SENTENCES[sid], start, end).replace(" ", "") == text.replace(" ", "")


def test_exact_gold_mentions_are_true_positives(tmp_path: Path) -> None:
    assert score(tmp_path, ["S1|3 7|BRCA1", "S1|15 24|p53 protein"]) == (2, 0, 4)


def test_an_alternative_of_a_gold_mention_counts_as_found(tmp_path: Path) -> None:
    # "BRCA1 gene" and "p53" are the alternatives of BRCA1 and p53 protein
    assert score(tmp_path, ["S1|3 11|BRCA1 gene", "S1|15 17|p53"]) == (2, 0, 4)


def test_a_gene_found_twice_counts_once_and_its_second_answer_is_no_false_positive(tmp_path: Path) -> None:
    # the gold mention and its alternative, and a duplicate line: one TP, and no FP for the extra answers
    assert score(tmp_path, ["S1|3 7|BRCA1", "S1|3 11|BRCA1 gene", "S1|3 7|BRCA1"]) == (1, 0, 5)


def test_one_alternative_overlapping_two_gold_mentions_finds_both(tmp_path: Path) -> None:
    # "alpha beta kinase" is an alternative overlapping both gold mentions of S2
    assert score(tmp_path, ["S2|0 14|alpha beta kinase"]) == (2, 0, 4)


def test_a_partial_overlap_that_is_no_alternative_is_wrong_twice(tmp_path: Path) -> None:
    # "p53pro..." overlaps the gold p53 protein but is neither it nor an alternative: FP, and the gene is missed
    assert score(tmp_path, ["S1|15 20|p53 pro"]) == (0, 1, 6)


def test_adjacent_mentions_joined_into_one_are_a_false_positive(tmp_path: Path) -> None:
    # CD4 and CD8 are adjacent gold mentions; "CD4 CD8" as one mention finds neither
    assert score(tmp_path, ["S4|0 5|CD4 CD8"]) == (0, 1, 6)
    assert score(tmp_path, ["S4|0 2|CD4", "S4|3 5|CD8"]) == (2, 0, 4)


def test_offsets_that_count_spaces_miss_and_are_noted(tmp_path: Path) -> None:
    # BRCA1 at character offsets 4-8 (spaces counted): not the non-space offsets 3-7
    pred = tmp_path / "pred.eval"
    pred.write_text("S1|4 8|BRCA1\n", encoding="utf-8")
    result = score_files(gold_folder(tmp_path), pred)
    assert (result.tp, result.fp, result.fn) == (0, 1, 6)
    assert result.text_mismatches == 1


def test_a_prediction_in_a_sentence_without_gold_is_a_false_positive_unless_an_alternative(tmp_path: Path) -> None:
    # S3 has no gold mention but an alternative: alt_eval.perl accepts any alternative of the sentence
    assert score(tmp_path, ["S3|0 1|no"]) == (0, 1, 6)
    assert score(tmp_path, ["S3|0 6|nogenes"]) == (0, 0, 6)


def test_the_figures_from_the_counts(tmp_path: Path) -> None:
    predictions = ["S1|3 7|BRCA1", "S2|0 14|alpha beta kinase", "S4|0 5|CD4 CD8", "S3|0 1|no"]
    pred = tmp_path / "pred.eval"
    pred.write_text("\n".join(predictions) + "\n", encoding="utf-8")
    result = score_files(gold_folder(tmp_path), pred)
    assert (result.tp, result.fp, result.fn) == (3, 2, 3)
    assert result.precision == pytest.approx(3 / 5)
    assert result.recall == pytest.approx(3 / 6)
    assert result.f1 == pytest.approx(2 * 0.6 * 0.5 / 1.1)


def test_no_predictions_score_zero_without_dividing_by_zero() -> None:
    result = score_mentions({"S1": [(0, 1)]}, {}, {})
    assert (result.tp, result.fp, result.fn) == (0, 0, 1)
    assert (result.precision, result.recall, result.f1) == (0.0, 0.0, 0.0)


def test_forge_score_bc2gm_prints_the_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = gold_folder(tmp_path)
    pred = tmp_path / "pred.eval"
    pred.write_text("S1|3 7|BRCA1\nS1|0 2|The\n", encoding="utf-8")
    assert main(["score", "bc2gm", str(folder), str(pred), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["tp"], data["fp"], data["fn"]) == (1, 1, 5)
    assert data["precision"] == pytest.approx(0.5) and data["recall"] == pytest.approx(1 / 6)
    assert main(["score", "bc2gm", str(folder), str(pred)]) == 0
    out = capsys.readouterr().out
    assert "TP 1  FP 1  FN 5" in out and "F1 0.2500" in out


@pytest.mark.parametrize("line, problem", [
    ("S1 3 7 BRCA1", "expected 'ID|start end|text'"),
    ("S1|3-7|BRCA1", "expected 'ID|start end|text'"),
    ("S9|0 1|x", "sentence 'S9' is not in the sentence file"),
    ("S1|7 3|x", "outside sentence 'S1'"),
    ("S1|3 30|x", "outside sentence 'S1'"),
])
def test_a_bad_prediction_line_is_one_error_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          line: str, problem: str) -> None:
    folder = gold_folder(tmp_path)
    pred = tmp_path / "pred.eval"
    pred.write_text(f"S1|3 7|BRCA1\n{line}\n", encoding="utf-8")
    assert main(["score", "bc2gm", str(folder), str(pred)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{pred}:2:" in err[0] and problem in err[0]


def test_missing_files_are_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred = tmp_path / "pred.eval"
    pred.write_text("S1|3 7|BRCA1\n", encoding="utf-8")
    assert main(["score", "bc2gm", str(tmp_path / "nowhere"), str(pred)]) == 2
    assert "does not exist" in capsys.readouterr().err
    folder = gold_folder(tmp_path, alternatives=None)
    with pytest.raises(EvaluationError, match="has no ALTGENE.eval"):
        score_files(folder, pred)
    assert main(["score", "bc2gm", str(folder), str(tmp_path / "none.eval")]) == 2
    assert "prediction file" in capsys.readouterr().err
