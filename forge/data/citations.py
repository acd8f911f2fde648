"""Citation removal for the `remove_citations` step: numeric ([1], [1-3], [1,4]) and author-year
((Smith et al., 2020), (Smith and Jones, 2019; Lee, 2021)) references.

The patterns are narrow on purpose: a numeric citation holds only numbers and separators, so bracketed
genomics notation ([Ca2+], HGVS p.[Arg97Cys;Gly12Asp], intervals like [0, 1]) is left alone; an author
name needs a lower-case letter, so gene symbols (BRCA1, EGFR) are never taken for authors.
"""
from __future__ import annotations

import re

_NUMBER = r"[1-9]\d{0,3}[a-z]?"  # citation numbers start at 1: [0, 1] is an interval, not a reference
_SEPARATOR = r"\s*(?:[,;]|[-\u2010-\u2015\u2212])\s*"
NUMERIC = re.compile(rf"\[\s*{_NUMBER}(?:{_SEPARATOR}{_NUMBER})*\s*[,;]?\s*\]")
NUMERIC_RANGE = re.compile(rf"\[\s*{_NUMBER}\s*\]\s*[-\u2010-\u2015\u2212]\s*\[\s*{_NUMBER}\s*\]")
_EMPTY_BRACKETS = re.compile(rf"\[\s*[,;]?\s*\]")

_LETTER = "A-Za-z\u00c0-\u024f"
_NAME = (rf"(?:(?:van|von|de|der|den|del|da|di|du|la|le)\s+)*"
         rf"[A-Z][{_LETTER}'\u2019-]*[a-z\u00df-\u024f][{_LETTER}'\u2019-]*")
_AUTHORS = rf"{_NAME}(?:\s+et\s+al\.?|\s+(?:and|&)\s+{_NAME})?"
_YEAR = r"(?:19|20)\d{2}[a-z]?"
_ENTRY = rf"{_AUTHORS},?\s+{_YEAR}(?:\s*,\s*{_YEAR})*"
_PREFIX = r"(?:(?:e\.g\.|i\.e\.|see(?:\s+also)?|cf\.|reviewed\s+in|for\s+review,?\s+see)\s*,?\s*)"
_ENTRIES = rf"{_PREFIX}?{_ENTRY}(?:\s*[;,]\s*{_PREFIX}?{_ENTRY})*"
AUTHOR_YEAR = re.compile(rf"\(\s*{_ENTRIES}\s*\)")
# Citations that share a parenthesis with other words, after or before a semicolon: (Fig. 2; Lee, 2019).
AUTHOR_YEAR_SHARED = re.compile(rf";\s*{_ENTRIES}\s*(?=\))|(?<=\()\s*{_ENTRIES}\s*;\s*")
# "Smith et al. (2020) showed": keep the names, which are part of the sentence, drop the year.
NARRATIVE_YEAR = re.compile(rf"(?<=et al\.)\s*\(\s*{_YEAR}\s*\)")


def remove_citations(text: str, numeric: bool = True, author_year: bool = True) -> str:
    """The text without citation markers (and the spaces before each; a line break stays)."""
    if numeric and "[" in text:
        before = None
        while before != text:  # nested references such as [1-3, [4]] need a second pass
            before = text
            text = _remove(NUMERIC_RANGE, text)
            text = _remove(NUMERIC, text)
            if text != before:
                text = _remove(_EMPTY_BRACKETS, text)
    if author_year and "(" in text:
        text = _remove(AUTHOR_YEAR, text)
        if ";" in text:
            text = AUTHOR_YEAR_SHARED.sub("", text)
        if "et al" in text:
            text = NARRATIVE_YEAR.sub("", text)
    return text


def _remove(pattern: re.Pattern[str], text: str) -> str:
    # The patterns start at the bracket, which lets the regex engine skip ahead fast; the spaces before a
    # match are trimmed here instead.
    pieces, last = [], 0
    for match in pattern.finditer(text):
        pieces.append(text[last:match.start()].rstrip(" \t\u00a0"))
        last = match.end()
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)
