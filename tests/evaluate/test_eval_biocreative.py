"""BioCreative II gene-mention files: offsets that count non-space characters (end inclusive), alternatives as
aliases, gold character spans for the token route, and errors with the file and line."""
from __future__ import annotations

from pathlib import Path

import pytest

from forge.evaluate.biocreative import find_bc2gm, read_bc2gm, span_text, to_nonspace_span
from forge.evaluate.errors import EvaluationError
from forge.evaluate.examples import from_sentences
from forge.evaluate.genes import GoldGene

# Non-space offsets of S1, counted by hand (spaces skipped):
#   The=0-2  TNF-alpha=3-11  gene=12-15  and=16-18  protein=19-25  kinase=26-31  C=32  bind.=33-37
# Character offsets of the same words: TNF-alpha = [4, 13), "protein kinase C" = [23, 39)
S1 = "The TNF-alpha gene and protein kinase C bind."
SENTENCES = f"S1 {S1}\nS2 No gene is named here.\n"
GENES = "S1|3 11|TNF-alpha\nS1|19 32|protein kinase C\n"
ALTERNATIVES = "S1|3 5|TNF\nS1|26 32|kinase C\n"


def write_set(folder: Path, genes: str = GENES, sentences: str = SENTENCES, alt: str | None = ALTERNATIVES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test.in").write_text(sentences, encoding="utf-8")
    (folder / "GENE.eval").write_text(genes, encoding="utf-8")
    if alt is not None:
        (folder / "ALTGENE.eval").write_text(alt, encoding="utf-8")
    return folder


def test_offsets_by_hand() -> None:
    assert span_text(S1, 3, 11) == "TNF-alpha"
    assert span_text(S1, 19, 32) == "protein kinase C"  # a span keeps the spaces inside it
    assert to_nonspace_span(S1, 4, 13) == (3, 11) and to_nonspace_span(S1, 23, 39) == (19, 32)
    with pytest.raises(ValueError):
        span_text(S1, 30, 40)  # S1 has 38 non-space characters (0-37)


def test_read_a_set_with_alternatives(tmp_path: Path) -> None:
    sentences, genes, alt = find_bc2gm(write_set(tmp_path / "bc2gm"))
    read = read_bc2gm(sentences, genes, alt)
    assert [s.id for s in read] == ["S1", "S2"]
    s1, s2 = read
    assert [(m.start, m.end, m.text) for m in s1.mentions] == [(3, 11, "TNF-alpha"), (19, 32, "protein kinase C")]
    # an alternative that overlaps a mention is one of its aliases
    assert s1.gold == [GoldGene("TNF-alpha", ("TNF",)), GoldGene("protein kinase C", ("kinase C",))]
    assert s2.mentions == () and s2.gold == []


def test_examples_carry_character_spans_and_keep_sentences_without_genes(tmp_path: Path) -> None:
    sentences, genes, alt = find_bc2gm(write_set(tmp_path / "bc2gm"))
    data = from_sentences(read_bc2gm(sentences, genes, alt), "BC2GM")
    s1, s2 = data.gene_recognition
    assert s1.spans == ((4, 13), (23, 39))
    assert [S1[a:b] for a, b in s1.spans] == ["TNF-alpha", "protein kinase C"]
    assert s2.gold == () and s2.spans == ()  # an unannotated BC2GM sentence has no genes: it is evaluated
    assert [e.text for e in data.perplexity] == [S1, "No gene is named here."]


def test_a_folder_without_alternatives_or_without_gene_file(tmp_path: Path) -> None:
    folder = write_set(tmp_path / "plain", alt=None)
    assert find_bc2gm(folder) == (folder / "test.in", folder / "GENE.eval", None)
    assert find_bc2gm(tmp_path / "plain" / "..") is None  # no GENE.eval
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    (lonely / "GENE.eval").write_text(GENES, encoding="utf-8")
    with pytest.raises(EvaluationError, match="no sentence file"):
        find_bc2gm(lonely)


@pytest.mark.parametrize("genes,message", [
    ("S1|3 11|TNF-alpha\nS9|0 1|Xy\n", r"GENE.eval:2: sentence 'S9' is not in the sentence file"),
    ("S1 3 11 TNF-alpha\n", r"GENE.eval:1: expected 'ID\|start end\|mention'"),
])
def test_bad_annotations_name_the_file_and_line(tmp_path: Path, genes: str, message: str) -> None:
    sentences, gene_file, _ = find_bc2gm(write_set(tmp_path / "bad", genes=genes, alt=None))
    with pytest.raises(EvaluationError, match=message):
        read_bc2gm(sentences, gene_file)


def test_a_mention_whose_offsets_do_not_match_is_dropped_and_the_rest_kept(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # line 2: 3 10 gives 'TNF-alph'; line 4: past the end of S1's 38 non-space characters; lines 1 and 3 are good
    genes = "S1|19 32|protein kinase C\nS1|3 10|TNF-alpha\nS1|3 11|TNF-alpha\nS1|30 40|C bind.\n"
    folder = write_set(tmp_path / "official", genes=genes, alt="S1|3 5|TNF\nS1|0 1|kinase\n")
    dropped: list = []
    read = read_bc2gm(*find_bc2gm(folder), dropped=dropped)
    assert [(m.start, m.end, m.text) for m in read[0].mentions] == [(19, 32, "protein kinase C"), (3, 11, "TNF-alpha")]
    assert [a.text for a in read[0].alternatives] == ["TNF"]
    assert [(Path(d.path).name, d.line, d.sentence_id) for d in dropped] == \
        [("GENE.eval", 2, "S1"), ("GENE.eval", 4, "S1"), ("ALTGENE.eval", 2, "S1")]
    assert dropped[0].reason == "offsets 3 10 give 'TNF-alph', not 'TNF-alpha'"
    assert dropped[1].reason == "span 30 40 is outside a sentence of 38 non-space characters"
    warning = capsys.readouterr().err
    assert warning.count("forge: warning: dropped 3 BC2GM mentions whose offsets do not match the sentence") == 1
    assert "GENE.eval:2: S1: offsets 3 10 give 'TNF-alph'" in warning and "ALTGENE.eval:2: S1:" in warning
    # offsets are trusted when asked
    assert len(read_bc2gm(*find_bc2gm(folder), check_offsets=False)[0].mentions) == 4


def test_evaluation_data_with_a_bad_mention_keeps_the_corpus_and_notes_it(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from forge.evaluate.examples import load_eval_data

    folder = write_set(tmp_path / "official", genes="S1|3 10|TNF-alpha\nS1|19 32|protein kinase C\n", alt=None)
    ev = SimpleNamespace(data=str(folder), max_examples=100)
    data = load_eval_data(SimpleNamespace(evaluation=ev, data=SimpleNamespace(fields=("abstract",))), None)
    assert [len(e.gold) for e in data.gene_recognition] == [1, 0] and data.unit == "sentence"
    assert data.notes == [f"BC2GM: dropped 1 mention whose offsets do not match their sentence: "
                          f"{folder / 'GENE.eval'}:1: S1: offsets 3 10 give 'TNF-alph', not 'TNF-alpha'"]


def test_bad_sentence_line(tmp_path: Path) -> None:
    sentences, gene_file, _ = find_bc2gm(write_set(tmp_path / "bad", sentences="S1\n", genes="", alt=None))
    with pytest.raises(EvaluationError, match=r"test.in:1: expected 'ID sentence'"):
        read_bc2gm(sentences, gene_file)
