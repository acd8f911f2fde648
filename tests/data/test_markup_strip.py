"""strip_markup: HTML, LaTeX and Markdown marks go, the words inside them stay, and notation that merely
looks like markup (p<0.05, [Ca2+], $5) is left alone."""
from __future__ import annotations

import pytest

from data_support import paper, run_step
from forge.data.markup import strip_html, strip_latex, strip_markdown, strip_markup


@pytest.mark.parametrize(("text", "expected"), [
    ("<i>BRCA1</i> and <b>TP53</b>", "BRCA1 and TP53"),
    ("<I>EGFR</I> and <span class=\"gene\">KRAS</span>", "EGFR and KRAS"),
    ("<p>Para one</p><p>Para two</p>", "\nPara one\n\nPara two\n"),  # block tags become line breaks
    ("x &amp; y &lt; z &alpha;", "x & y < z \u03b1"),
    ("<script>alert(1)</script>kept<style>p{}</style>", "kept"),
    ("<!-- a comment -->kept", "kept"),
    ("p = 10<sup>-8</sup>", "p = 10^-8"),  # a number's superscript is an exponent
    ("Ca<sup>2+</sup> signalling", "Ca2+ signalling"),
    ("TP53<sup>R175H</sup> allele", "TP53R175H allele"),  # not an exponent, though the symbol ends in 3
    ("BRCA1 is mutated<sup>1,2</sup>.", "BRCA1 is mutated."),  # superscript reference list
    ("BRCA1 is mutated<sup>3\u20135</sup>.", "BRCA1 is mutated."),
])
def test_html(text: str, expected: str) -> None:
    assert strip_html(text) == expected


@pytest.mark.parametrize("text", [
    "p<0.05 and q>1",  # comparisons are not tags
    "the <BRCA1> locus and <ref> marks",  # not HTML tag names
    "5 < 6 > 4",
])
def test_text_that_only_looks_like_html_stays(text: str) -> None:
    assert strip_markup(text) == text


@pytest.mark.parametrize(("text", "expected"), [
    ("\\textit{BRCA1} and \\textbf{\\textit{TP53}}", "BRCA1 and TP53"),  # nested braces, innermost first
    ("TNF-$\\alpha$ and $\\beta$-catenin", "TNF-\u03b1 and \u03b2-catenin"),
    ("$p < 0.05$ overall", "p < 0.05 overall"),
    ("$10^{-8}$", "10^-8"),
    ("H$_2$O and $x_{i}$", "H2O and xi"),
    ("5~$\\mu$M", "5~\u03bcM"),
    ("\\frac{1}{2} of cases", "1/2 of cases"),
    ("50\\% of cases", "50% of cases"),
    ("shown before~\\cite{smith2020,lee2019}.", "shown before."),
    ("see Table~\\ref{tab:1}", "see Table"),
    ("\\begin{itemize}\\item one\\end{itemize}", " one"),
    ("$\\Delta$F508 in CFTR", "\u0394F508 in CFTR"),
    ("$$E = mc^2$$", "E = mc^2"),
    ("\\emph{first}\\\\second", "first\nsecond"),  # a LaTeX line break, not a command named \\s...
])
def test_latex(text: str, expected: str) -> None:
    assert strip_latex(text) == expected


def test_dollar_amounts_are_not_math() -> None:
    assert strip_markup("it cost $5 and $6 per sample") == "it cost $5 and $6 per sample"


@pytest.mark.parametrize(("text", "expected"), [
    ("**BRCA1** and *TP53* and _EGFR_ and __KRAS__", "BRCA1 and TP53 and EGFR and KRAS"),
    ("# Results\nTP53 rose.", "Results\nTP53 rose."),
    ("### Methods ###", "Methods"),
    ("[the GTEx portal](https://gtexportal.org) and [1]", "the GTEx portal and [1]"),  # [1] is not a link
    ("![Figure 1](fig1.png)", "Figure 1"),
    ("the `samtools` command", "the samtools command"),
    ("> quoted line", "quoted line"),
    ("before\n---\nafter", "before\n\nafter"),
    ("```\ncode\n```", "\ncode\n"),
])
def test_markdown(text: str, expected: str) -> None:
    assert strip_markdown(text) == expected


@pytest.mark.parametrize("text", [
    "snake_case_name and BRCA1_2",  # underscores inside words are not emphasis
    "A__B__C",
    "2*3*4 and a * b * c",
    "p.[Arg97Cys] and [Ca2+]",  # brackets without a link target
])
def test_text_that_only_looks_like_markdown_stays(text: str) -> None:
    assert strip_markup(text) == text


def test_switches_turn_each_family_off() -> None:
    text = "<i>BRCA1</i> \\textit{TP53} **EGFR**"
    assert strip_markup(text, html_tags=False) == "<i>BRCA1</i> TP53 EGFR"
    assert strip_markup(text, latex=False) == "BRCA1 \\textit{TP53} EGFR"
    assert strip_markup(text, markdown=False) == "BRCA1 TP53 **EGFR**"


def test_html_wrapping_latex_and_markdown_is_stripped_in_one_pass() -> None:
    assert strip_markup("<p>**TNF-$\\alpha$** rose</p>") == "\nTNF-\u03b1 rose\n"


def test_step_strips_every_field() -> None:
    record = paper("m1", title="<i>BRCA1</i> in \\textit{cancer}", abstract="**TP53** rose.",
                   sections=[{"heading": "## Results", "text": "TNF-$\\alpha$ rose."}],
                   genes=[{"symbol": "TNF", "aliases": ["TNF-$\\alpha$"]}])
    (out,) = run_step("strip_markup", [record]).papers
    assert (out.title, out.abstract) == ("BRCA1 in cancer", "TP53 rose.")
    assert (out.sections[0].heading, out.sections[0].text) == ("Results", "TNF-\u03b1 rose.")
    assert out.genes[0].aliases == ("TNF-\u03b1",)
