"""The one notion of a gene named in a text: annotated genes found in a passage, and a model's answer read the
ways models write lists (parentheticals, a trailing "gene"/"protein", slashes, bullets, numbering, "none"),
with whether the answer parsed at all."""
from __future__ import annotations

import pytest

from forge.data.gene_mentions import GeneAnswer, genes_in_text, mention_position, parse_gene_answer, parse_gene_list
from forge.data.papers import GeneAnnotation


def test_a_name_is_mentioned_only_as_a_whole_word() -> None:
    assert mention_position("TP53", "Loss of TP53.") == 8
    assert mention_position("TP53", "xTP53 and TP530 and tp53") is None  # inside a longer word; case as written
    assert mention_position("IL-6", "(IL-6)") == 1
    assert mention_position("", "anything") is None


def test_genes_in_text_by_symbol_or_alias_in_order_of_first_mention() -> None:
    genes = [GeneAnnotation(symbol="TP53", aliases=("p53",)), GeneAnnotation(symbol="BRCA1"),
             GeneAnnotation(symbol="KRAS"), GeneAnnotation(symbol="BRCA1")]
    found = genes_in_text(genes, "BRCA1 loss raised p53. TP53 was not mutated; BRCA1 again.")
    assert [g.symbol for g in found] == ["BRCA1", "TP53"]  # KRAS is not in the text; BRCA1 listed twice counts once
    assert found[1].aliases == ("p53",)  # the annotation itself comes back, aliases and all


@pytest.mark.parametrize("answer,names", [
    ("Genes: BRCA1, TP53 and EGFR.", ["BRCA1", "TP53", "EGFR"]),
    ("- BRCA1\n- brca1\n2. TP53", ["BRCA1", "TP53"]),  # bullets, numbering, a duplicate
    ("1) KRAS; 2) MYC", ["KRAS", "MYC"]),
    ('"TNF-α", "TNF-alpha", IL6', ["TNF-α", "IL6"]),  # the second is the first again
    ("The genes mentioned are: PTEN or APOE", ["PTEN", "APOE"]),
    ("The genes mentioned in this text are BRCA1 and TP53.", ["BRCA1", "TP53"]),
    # how models answer, which the parser before this module counted as misses plus false positives
    ("BRCA1 (breast cancer 1, early onset), TP53", ["BRCA1", "TP53"]),
    ("breast cancer 1 (BRCA1)", ["BRCA1"]),  # a full name with the symbol in brackets
    ("TP53 gene, KRAS protein, the EGFR gene", ["TP53", "KRAS", "EGFR"]),
    ("TP53/KRAS", ["TP53", "KRAS"]),
    ("Here are the genes mentioned in the passage:\n\n1. **BRCA1**\n2. TP53\n\nBoth repair DNA.", ["BRCA1", "TP53"]),
    (" BRCA1, TP53\n\nPassage: the model goes on writing", ["BRCA1", "TP53"]),
    ("Genes:\n- BRCA1\n\n- TP53", ["BRCA1", "TP53"]),  # a bulleted list with a gap
    # a name, then what the model says about it (as SmolLM2-135M-Instruct answers)
    ("1. PSEN1: raised in HEK293T cells\n2. MAPT - tau, which aggregates", ["PSEN1", "MAPT"]),
    ("- Genes: BRCA1, TP53", ["BRCA1", "TP53"]),
])
def test_a_models_list(answer: str, names: list[str]) -> None:
    parsed = parse_gene_answer(answer)
    assert list(parsed.names) == names and parsed.parsed and not parsed.none
    assert parse_gene_list(answer) == names


@pytest.mark.parametrize("answer", ["none", "None.", "No genes.", "N/A", "No genes are mentioned in this text.",
                                    "There are no human genes mentioned."])
def test_none_is_an_answer_that_parses(answer: str) -> None:
    assert parse_gene_answer(answer) == GeneAnswer((), parsed=True, none=True)


@pytest.mark.parametrize("answer,names,rejected", [
    ("", [], []),  # nothing said: not a list
    ("   \n", [], []),
    ("The gene BRCA1 is mentioned in this passage", [], ["gene BRCA1 is mentioned in this passage"]),
    ("BRCA1, and the tumour suppressor pathway of DNA repair", ["BRCA1"],
     ["tumour suppressor pathway of DNA repair"]),  # a name and a sentence: the name counts, the answer did not parse
    ("123, 45", [], ["123", "45"]),  # numbers are not names
])
def test_answers_that_do_not_parse(answer: str, names: list[str], rejected: list[str]) -> None:
    parsed = parse_gene_answer(answer)
    assert (list(parsed.names), list(parsed.rejected), parsed.parsed, parsed.none) == (names, rejected, False, False)
