"""remove_citations: numeric and author-year references go; gene names and bracketed notation stay."""
from __future__ import annotations

import pytest

from data_support import paper, run_step
from forge.data.citations import remove_citations


@pytest.mark.parametrize(("text", "expected"), [
    ("BRCA1 [3] is mutated.", "BRCA1 is mutated."),
    ("BRCA1[3] is mutated.", "BRCA1 is mutated."),  # glued to the gene name
    ("TP53 [1-3] and MDM2 [4,7].", "TP53 and MDM2."),
    ("TP53 [1\u20133] and [2 \u2013 5].", "TP53 and."),  # en dashes, with and without spaces
    ("seen before [12,13,15-17].", "seen before."),
    ("seen before [2]-[5].", "seen before."),  # a range written as two references
    ("TNF-\u03b1 [12] levels rose.", "TNF-\u03b1 levels rose."),
])
def test_numeric_citations_go_and_take_the_space_before_them(text: str, expected: str) -> None:
    assert remove_citations(text) == expected


@pytest.mark.parametrize("text", [
    "Intracellular [Ca2+] rose.",
    "The variant p.[Arg97Cys] was found.",
    "Compound heterozygous p.[Arg97Cys;Gly12Asp] in trans.",
    "[3H]thymidine and [14C]glucose were used.",
    "scaled to the interval [0, 1] before fitting",  # a citation number never starts at 0
    "the genes [TP53] and Figure 2 [A]",
    "BRCA1 (breast cancer 1) and EGFR (ErbB1) are genes.",
    "(BRCA1, 2020) names a gene, not an author",  # an author name needs a lower-case letter
    "In (2020) alone, nothing is cited.",
])
def test_bracketed_notation_and_gene_names_stay(text: str) -> None:
    assert remove_citations(text) == text


def test_nested_brackets_are_removed_completely() -> None:
    # The inner [4] goes on the first pass, which leaves "[1-3, ]" for the second.
    assert remove_citations("as reported [1-3, [4]] before") == "as reported before"
    assert remove_citations("as reported [[1], [2]] before") == "as reported before"


@pytest.mark.parametrize(("text", "expected"), [
    ("TP53 (Smith et al., 2020; Lee, 2019) regulates apoptosis.", "TP53 regulates apoptosis."),
    ("TP53 (Smith et al. 2020) regulates apoptosis.", "TP53 regulates apoptosis."),
    ("as shown (e.g., Smith and Jones, 2019) here", "as shown here"),
    ("as shown (Smith & Jones, 2019) here", "as shown here"),
    ("IL-6 (M\u00fcller et al., 2011a, 2012b) was high", "IL-6 was high"),
    ("a link (van der Berg et al., 2018) exists", "a link exists"),
    ("a link (O'Neil, 2015) exists", "a link exists"),
    ("a link (see also Smith et al., 2020) exists", "a link exists"),
    ("NF-\u03baB (Lee, 2019) is active", "NF-\u03baB is active"),
])
def test_author_year_citations_go(text: str, expected: str) -> None:
    assert remove_citations(text) == expected


def test_citation_sharing_a_parenthesis_leaves_the_other_words() -> None:
    assert remove_citations("was high (Fig. 1; Smith et al., 2020).") == "was high (Fig. 1)."
    assert remove_citations("was high (Smith et al., 2020; Fig. 1).") == "was high (Fig. 1)."
    assert remove_citations("was high (n = 5; Lee and Kim, 2019; Wu, 2018).") == "was high (n = 5)."
    assert remove_citations("two genes (TP53; BRCA1) stay") == "two genes (TP53; BRCA1) stay"


def test_narrative_citation_keeps_the_names_and_drops_the_year() -> None:
    assert remove_citations("Smith et al. (2020) showed that") == "Smith et al. showed that"


def test_switches_turn_each_kind_off() -> None:
    text = "TP53 [1] binds MDM2 (Smith et al., 2020)."
    assert remove_citations(text, numeric=False) == "TP53 [1] binds MDM2."
    assert remove_citations(text, author_year=False) == "TP53 binds MDM2 (Smith et al., 2020)."


def test_step_cleans_every_field_and_keeps_gene_annotations() -> None:
    record = paper("c1", title="BRCA1 [1] in breast cancer", abstract="Loss of BRCA1 [2] (Lee, 2019).",
                   sections=[{"heading": "Results [3]", "text": "[Ca2+] rose [4]."}, {"heading": "Empty", "text": ""}],
                   genes=[{"symbol": "BRCA1", "aliases": ["BRCC1 [5]"]}])
    out = run_step("remove_citations", [record]).papers
    assert len(out) == 1
    cleaned = out[0]
    assert (cleaned.title, cleaned.abstract) == ("BRCA1 in breast cancer", "Loss of BRCA1.")
    assert [(s.heading, s.text) for s in cleaned.sections] == [("Results", "[Ca2+] rose."), ("Empty", "")]
    assert cleaned.genes[0].symbol == "BRCA1" and cleaned.genes[0].aliases == ("BRCC1",)
    assert cleaned.id == "c1"


def test_step_arguments_are_checked() -> None:
    from pydantic import ValidationError

    from forge.data.steps import STEPS

    with pytest.raises(ValidationError):
        STEPS.get("remove_citations").params.model_validate({"numeric": "yes"})  # strict: no coercion
    with pytest.raises(ValidationError):
        STEPS.get("remove_citations").params.model_validate({"numerc": False})
