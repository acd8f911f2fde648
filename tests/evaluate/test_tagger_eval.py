"""`forge eval` of a token classifier: entity-level scores (seqeval, strict IOB2) on a CoNLL file, and the
official BC2GM score on a BC2GM folder, whose written predictions `forge score bc2gm` scores the same."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge.data.conll import read_conll
from forge.evaluate.entities import entity_scores
from forge.evaluate.tagger_eval import sentence_counts


def test_sentence_counts_sum_to_seqevals_strict_scores() -> None:
    gold = [["B-GENE", "I-GENE", "O", "B-GENE"], ["O", "B-DNA", "O"], ["B-GENE", "O"]]
    predicted = [["B-GENE", "I-GENE", "O", "I-GENE"], ["O", "B-GENE", "O"], ["B-GENE", "O"]]
    counts = sentence_counts(gold, predicted)
    # strict IOB2: an I-GENE after O opens no entity, and a right span of the wrong type is wrong
    assert counts == [(1, 0, 1), (0, 1, 1), (1, 0, 0)]
    tp, fp, fn = (sum(c[i] for c in counts) for i in range(3))
    scores = entity_scores(gold, predicted)
    assert scores["entity_precision"] == pytest.approx(tp / (tp + fp))
    assert scores["entity_recall"] == pytest.approx(tp / (tp + fn))


def bc2gm_folder(conll_file: Path, folder: Path) -> Path:
    """The CoNLL fixture as a BC2GM set: each sentence's words joined by spaces, its mentions in GENE.eval."""
    folder.mkdir(parents=True, exist_ok=True)
    sentences, genes = [], []
    for n, s in enumerate(read_conll(conll_file)):
        sid = f"P{n:05d}"
        sentences.append(f"{sid} {' '.join(s.words)}")
        offset, start, words = 0, None, []  # non-space offsets: the words' lengths, spaces not counted
        for word, tag in zip(list(s.words) + [""], list(s.tags) + ["O"]):
            if tag != "I-GENE" and start is not None:
                genes.append(f"{sid}|{start} {offset - 1}|{' '.join(words)}")
                start, words = None, []
            if tag == "B-GENE":
                start = offset
            if tag != "O":
                words.append(word)
            offset += len(word)
    (folder / "test.in").write_text("\n".join(sentences) + "\n", encoding="utf-8")
    (folder / "GENE.eval").write_text("\n".join(genes) + "\n", encoding="utf-8")
    (folder / "ALTGENE.eval").write_text("", encoding="utf-8")
    return folder


@pytest.mark.slow
def test_forge_eval_scores_a_token_classifier(tagger_run: dict, conll_file: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from forge.cli import main
    from forge.evaluate.run import evaluate_run

    run_dir = Path(tagger_run["run_dir"])
    report = evaluate_run(run_dir, "base", overrides=[f"evaluation.data={conll_file}"], progress=False)
    assert any("scored alone" in note for note in report["notes"]) and not report["has_baseline"]
    entity = report["metrics"]["entity_f1"]
    assert entity["task"] == "entities" and entity["tuned"] > 0.9
    assert entity["tuned_ci"][0] <= entity["tuned"] <= entity["tuned_ci"][1]
    assert report["tasks"]["entities"]["tuned"]["details"]["sentences"] == 48

    folder = bc2gm_folder(conll_file, tmp_path / "bc2gm")
    report = evaluate_run(run_dir, overrides=[f"evaluation.data={folder}"], progress=False)
    official = report["metrics"]["bc2gm_f1"]["tuned"]
    assert official > 0.9
    details = report["tasks"]["bc2gm"]["tuned"]["details"]
    predictions = run_dir / "eval" / "bc2gm_predictions.eval"
    assert main(["score", "bc2gm", str(folder), str(predictions), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert (scored["tp"], scored["fp"], scored["fn"]) == (details["tp"], details["fp"], details["fn"])
    assert scored["f1"] == pytest.approx(official) and scored["text_mismatches"] == 0
