"""normalize_genomics: one spelling for gene symbols, Greek letters, units, p-values, chromosomes, rs IDs
and HGVS variants, changing only what is unambiguous."""
from __future__ import annotations

import pytest

from data_support import paper, run_step
from forge.data.genomics import normalize_genomics


@pytest.mark.parametrize(("text", "expected"), [
    ("brca1 and tp53 mutations", "BRCA1 and TP53 mutations"),
    ("kras G12D", "KRAS G12D"),
    ("Brca1 in mice and mTOR signalling", "Brca1 in mice and mTOR signalling"),  # mixed case is a convention
    ("the met receptor, the ret proto-oncogene, a kit", "the met receptor, the ret proto-oncogene, a kit"),
    ("p53 and P53", "p53 and P53"),  # an alias, not an official symbol
    ("sbrca1 and brca1x and x.brca1", "sbrca1 and brca1x and x.brca1"),  # only whole words
    ("a brca1-like profile", "a BRCA1-like profile"),
])
def test_gene_symbol_case(text: str, expected: str) -> None:
    assert normalize_genomics(text) == expected


def test_gene_case_uses_the_paper_genes_and_extra_symbols() -> None:
    assert normalize_genomics("zzz9 is new", symbols=["ZZZ9"]) == "ZZZ9 is new"
    assert normalize_genomics("zzz9 is new") == "zzz9 is new"


@pytest.mark.parametrize(("text", "names", "symbols"), [
    ("TNF-\u03b1", "TNF-alpha", "TNF-\u03b1"),
    ("IL-1\u03b2", "IL-1beta", "IL-1\u03b2"),
    ("NF-\u03baB", "NF-kappaB", "NF-\u03baB"),
    ("\u03b2-catenin", "beta-catenin", "\u03b2-catenin"),
    ("TNF-alpha", "TNF-alpha", "TNF-\u03b1"),
    ("PPARgamma", "PPARgamma", "PPAR\u03b3"),
    ("HIF-1\u03b1 and \u03bc-opioid", "HIF-1alpha and mu-opioid", "HIF-1\u03b1 and \u03bc-opioid"),
    # A Greek word on its own is a word (a significance level, a helix), not a symbol.
    ("alpha = 0.05 and the alpha helix", "alpha = 0.05 and the alpha helix", "alpha = 0.05 and the alpha helix"),
    # mu as a unit prefix stays a symbol in both modes.
    ("5 \u03bcM and 2 \u03bcg in ng/\u03bcL", "5 \u03bcM and 2 \u03bcg in ng/\u03bcL", "5 \u03bcM and 2 \u03bcg in ng/\u03bcL"),
])
def test_greek_letters(text: str, names: str, symbols: str) -> None:
    assert normalize_genomics(text, greek="names") == names
    assert normalize_genomics(text, greek="symbols") == symbols
    assert normalize_genomics(text, greek="keep") == text


@pytest.mark.parametrize(("text", "expected"), [
    ("P=1.2x10^-8", "p = 1.2e-8"),
    ("P = 3.4 \u00d7 10^-12", "p = 3.4e-12"),
    ("P = 3.4 \u00d7 10^{-12}", "p = 3.4e-12"),
    ("p-value of 6.4e-7", "p = 6.4e-7"),
    ("P<0.05", "p < 0.05"),
    ("p < .001", "p < 0.001"),
    ("P <= 0.01", "p \u2264 0.01"),
    ("P = 0.003", "p = 0.003"),
    ("the P2X7 receptor", "the P2X7 receptor"),  # not a p-value
    ("group P value", "group P value"),  # no number
])
def test_p_values(text: str, expected: str) -> None:
    assert normalize_genomics(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("10uM", "10 \u03bcM"),
    ("5 ug/ml", "5 \u03bcg/mL"),
    ("20 micromolar", "20 \u03bcM"),
    ("2 \u00b5L", "2 \u03bcL"),
    ("37 \u00baC", "37 \u00b0C"),
    ("a 10.5 kb region and 15 KDa", "a 10.5 kb region and 15 kDa"),
    ("20 % of cases", "20% of cases"),
    ("at 95% CI", "at 95% CI"),
    ("500 mg of drug", "500 mg of drug"),  # already canonical
])
def test_units(text: str, expected: str) -> None:
    assert normalize_genomics(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("Chr 7", "chr7"),
    ("CHR7 and chrx", "chr7 and chrX"),
    ("chr7Q31", "chr7q31"),
    ("7Q31.2", "7q31.2"),
    ("chromosome11p15.5", "chromosome 11p15.5"),
    ("chromosome7 and chromosome X", "chromosome 7 and chromosome X"),
    ("chr7:55,191,822", "chr7:55,191,822"),
    ("Q4 2020 and PQ1", "Q4 2020 and PQ1"),  # not a band: nothing chromosome-like before the arm
])
def test_chromosomes_and_bands(text: str, expected: str) -> None:
    assert normalize_genomics(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("RS123456 and rs 12345 and rs#987654", "rs123456 and rs12345 and rs987654"),
    ("c.76a>t", "c.76A>T"),
    ("c.76 A > T", "c.76A>T"),
    ("c.123_125DEL and c.5delinsAG", "c.123_125del and c.5delinsAG"),
    ("p.arg97cys", "p.Arg97Cys"),
    ("p.[Arg97Cys] and p.(arg97cys)", "p.[Arg97Cys] and p.(Arg97Cys)"),  # bracketed HGVS stays bracketed
    ("p.G12D", "p.G12D"),  # one-letter amino acids are left as written
    ("tips.5 and sp.5", "tips.5 and sp.5"),  # a dot inside a word is not HGVS
])
def test_variants(text: str, expected: str) -> None:
    assert normalize_genomics(text) == expected


def test_switches_turn_each_rule_off() -> None:
    text = "brca1 P=0.01 10uM Chr 7 RS123456 TNF-\u03b1"
    assert normalize_genomics(text, gene_case=False).startswith("brca1 ")
    assert "P=0.01" in normalize_genomics(text, p_values=False)
    assert "10uM" in normalize_genomics(text, units=False)
    assert "Chr 7" in normalize_genomics(text, chromosomes=False)
    assert "RS123456" in normalize_genomics(text, variants=False)
    assert normalize_genomics(text) == "BRCA1 p = 0.01 10 \u03bcM chr7 rs123456 TNF-alpha"


def test_normalizing_twice_changes_nothing_more(demo_texts: list[str]) -> None:
    for greek in ("names", "symbols"):
        for text in demo_texts:
            once = normalize_genomics(text, greek=greek)
            assert normalize_genomics(once, greek=greek) == once, text


def test_step_fixes_case_of_the_papers_own_genes() -> None:
    record = paper("g1", abstract="Loss of zzz9 and brca1 raised TNF-\u03b1 (P<0.01).",
                   genes=[{"symbol": "ZZZ9", "aliases": []}, {"symbol": "TNF", "aliases": ["TNF-\u03b1"]}])
    (out,) = run_step("normalize_genomics", [record]).papers
    assert out.abstract == "Loss of ZZZ9 and BRCA1 raised TNF-alpha (p < 0.01)."
    assert out.genes[1].aliases == ("TNF-alpha",)  # aliases follow the text, so gene scoring still finds them
    (out,) = run_step("normalize_genomics", [record], extra_symbols=["ZZZ9"], greek="keep").papers
    assert out.abstract == "Loss of ZZZ9 and BRCA1 raised TNF-\u03b1 (p < 0.01)."
