"""normalize_unicode and normalize_whitespace: one spelling for the same characters, one space between
words, paragraphs kept, and the debris that removed citations leave behind cleaned up."""
from __future__ import annotations

import pytest

from data_support import paper, run_step
from forge.data.normalize import normalize_unicode, normalize_whitespace


@pytest.mark.parametrize(("text", "expected"), [
    ("TNF\u2010\u03b1 and IL\u20116", "TNF-\u03b1 and IL-6"),  # Unicode hyphens; the Greek letter stays
    ("a \u2212 b and \u22125", "a - b and -5"),  # minus sign
    ("10\u201420 cells", "10-20 cells"),  # an em dash between numbers is a range
    ("mutated\u2014in most cases\u2014early", "mutated - in most cases - early"),
    ("\u201cquoted\u201d and \u2018single\u2019", "\"quoted\" and 'single'"),
    ("p = 10\u207b\u2078", "p = 10^-8"),  # superscript exponent keeps its sign (NFKC alone gives 10-8)
    ("Ca\u00b2\u207a influx", "Ca2+ influx"),
    ("\ufb01brosis", "fibrosis"),  # ligature
    ("\uff11\uff12\uff13 \uff4d\uff2d", "123 mM"),  # full-width forms
    ("5 \u00b5M", "5 \u03bcM"),  # micro sign becomes the Greek letter mu
    ("A\u00a0B", "A B"),  # no-break space
    ("e\u0301", "\u00e9"),  # combining accent composed
    ("1\u20442", "1/2"),
])
def test_unicode_forms(text: str, expected: str) -> None:
    assert normalize_unicode(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("BRCA\u200b1", "BRCA1"),  # zero-width space inside a gene symbol
    ("\ufeffStart", "Start"),  # byte order mark
    ("TP\u200d53 and EG\u200cFR", "TP53 and EGFR"),  # zero-width joiner and non-joiner
    ("soft\u00adhyphen", "softhyphen"),
    ("word\u2060joiner", "wordjoiner"),
])
def test_invisible_characters_go(text: str, expected: str) -> None:
    assert normalize_unicode(text) == expected


def test_control_characters_go_from_ascii_text_too() -> None:
    assert normalize_unicode("BRCA1\x00 and\x07 TP53\x7f") == "BRCA1 and TP53"
    # Tabs and line breaks are whitespace, left for normalize_whitespace.
    assert normalize_unicode("a\tb\nc\x0cd") == "a\tb\nc\x0cd"


def test_unicode_switches() -> None:
    assert normalize_unicode("\u201cx\u201d \u2013 y", quotes=False) == "\u201cx\u201d - y"
    assert normalize_unicode("\u201cx\u201d \u2013 y", dashes=False) == "\"x\" \u2013 y"
    assert normalize_unicode("\ufb01", form="NFC") == "\ufb01"  # NFC keeps compatibility characters


def test_unicode_is_idempotent_on_tricky_text() -> None:
    text = "TNF\u2010\u03b1 [Ca\u00b2\u207a] p\u2009=\u200910\u207b\u2078 \u201cBRCA\u200b1\u201d \u00b5M 10\u201420"
    once = normalize_unicode(text)
    assert normalize_unicode(once) == once
    assert "\u200b" not in once and "\u00b5" not in once


@pytest.mark.parametrize(("text", "expected"), [
    ("  TP53   binds\tMDM2  ", "TP53 binds MDM2"),
    ("para one\n\n\n\n para two ", "para one\n\npara two"),
    ("line one \n line two", "line one\nline two"),
    ("a\r\nb\rc", "a\nb\nc"),
    ("a\u2028b\u2029c", "a\nb\nc"),  # Unicode line and paragraph separators
    # What citation removal leaves: a space before punctuation, spaces inside brackets.
    ("TP53 , regulates ( MDM2 ) .", "TP53, regulates (MDM2)."),
    ("as shown [ 1 ] ; next", "as shown [1]; next"),
    ("p < 0.05 , and", "p < 0.05, and"),
    ("rose by 5 % .", "rose by 5 %."),
])
def test_whitespace(text: str, expected: str) -> None:
    assert normalize_whitespace(text) == expected


def test_whitespace_keeps_a_leading_decimal_point() -> None:
    # ".5" starts a number, not a sentence end; the space before it stays.
    assert normalize_whitespace("a value of .5 was") == "a value of .5 was"


def test_single_line_mode_fixes_punctuation_too() -> None:
    assert normalize_whitespace("TP53 , binds\n\n( MDM2 ) .", keep_paragraphs=False) == "TP53, binds (MDM2)."


def test_whitespace_step_drops_sections_left_empty() -> None:
    record = paper("w1", title="  Spaced   title ", abstract="An \t abstract.",
                   sections=[{"heading": "Methods", "text": "  \n\n  "}, {"heading": "Results", "text": "TP53  rose ."},
                             {"heading": "", "text": ""}])
    (out,) = run_step("normalize_whitespace", [record]).papers
    assert out.title == "Spaced title" and out.abstract == "An abstract."
    assert [(s.heading, s.text) for s in out.sections] == [("Results", "TP53 rose.")]


def test_a_paper_left_without_text_is_dropped_as_no_text() -> None:
    # Records with only invisible or blank text cannot be read (validation needs text), but a step can
    # leave a paper in that state: the runner then drops it and counts the reason.
    invisible = paper("w2", abstract="x").model_copy(update={"title": "\u200b\u200b", "abstract": ""})
    blank = paper("w3", abstract="x").model_copy(update={"title": " \t ", "abstract": "\n\n"})
    kept = paper("w4", abstract="Text.")
    # U+200B is not whitespace to str.strip, so only normalize_unicode empties the first paper.
    output = run_step("normalize_whitespace", [invisible, blank, kept])
    assert [p.id for p in output.papers] == ["w2", "w4"] and output.dropped == {"no_text": 1}
    output = run_step("normalize_unicode", [invisible, kept])
    assert [p.id for p in output.papers] == ["w4"] and output.dropped == {"no_text": 1}


def test_unicode_step_reaches_headings_and_aliases() -> None:
    record = paper("u1", title="TNF\u2010\u03b1", sections=[{"heading": "R\u00e9sultats\u200b", "text": "\u201cx\u201d"}],
                   genes=[{"symbol": "TNF", "aliases": ["TNF\u2010\u03b1"]}])
    (out,) = run_step("normalize_unicode", [record]).papers
    assert out.title == "TNF-\u03b1"
    assert (out.sections[0].heading, out.sections[0].text) == ("R\u00e9sultats", "\"x\"")
    assert out.genes[0].aliases == ("TNF-\u03b1",)


def test_a_step_that_changes_nothing_returns_the_same_paper() -> None:
    record = paper("same", abstract="Plain ASCII text.", sections=[{"heading": "Results", "text": "TP53 rose."}])
    (out,) = run_step("normalize_unicode", [record]).papers
    assert out is record
