"""Text normalization for the `normalize_unicode` and `normalize_whitespace` steps.

Unicode: superscript exponents become `^` notation first (NFKC alone would turn 10⁻⁸ into 10-8), then
NFKC, then typographic quotes and dashes become ASCII and invisible characters go. Whitespace: runs of
spaces collapse, lines are trimmed, paragraphs (blank lines) are kept, and the space that a removed
citation leaves before punctuation goes.
"""
from __future__ import annotations

import re
import unicodedata

_SUPERSCRIPTS = str.maketrans("\u207a\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079",
                              "+-0123456789")
_EXPONENT = re.compile(r"(\d)\s*([\u207a\u207b\u2070\u00b9\u00b2\u00b3\u2074-\u2079]+)")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u00b4": "'",
                         "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"'})
_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2212\ufe58\ufe63\uff0d\u2043"})
_EM_DASH_RANGE = re.compile(r"(?<=\d)[\u2014\u2015](?=\d)")  # 10—20 is a range
_EM_DASH = re.compile(r"[ ]*[\u2014\u2015][ ]*")  # a—b is punctuation
_SUPERSCRIPT_CHARS = re.compile(r"[\u207a\u207b\u2070\u00b9\u00b2\u00b3\u2074-\u2079]")
_QUOTE_CHARS = re.compile("[" + "".join(map(chr, _QUOTES)) + "]")
_DASH_CHARS = re.compile("[" + "".join(map(chr, _DASHES)) + "\u2014\u2015\u2044]")
# Control characters go; tab, line feed, vertical tab, form feed and carriage return are whitespace, which
# normalize_whitespace handles.
_ASCII_CONTROL = re.compile(r"[\u0000-\u0008\u000e-\u001f\u007f]")
_INVISIBLE = re.compile(r"[\u00ad\u200b-\u200d\u2060\ufeff\u0000-\u0008\u000e-\u001f\u007f]")

_LINE_BREAKS = re.compile(r"\r\n?|[\u2028\u2029\x85]")
_SPACES = re.compile(r"[^\S\n]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_SPACE_BEFORE_PUNCT = re.compile(r" +(?=[,;:!?]|\.(?:\s|$))")
_ATTACHES = re.compile(r"[\w)\]%]")  # what punctuation may be pulled up to
_SPACE_AFTER_OPENING = re.compile(r"([(\[]) +")
_SPACE_BEFORE_CLOSING = re.compile(r" +(?=[)\]])")


def normalize_unicode(text: str, form: str = "NFKC", quotes: bool = True, dashes: bool = True) -> str:
    """Unicode-normalized text with ASCII quotes and dashes and no invisible characters."""
    if text.isascii():
        return _INVISIBLE.sub("", text) if _ASCII_CONTROL.search(text) else text
    if _SUPERSCRIPT_CHARS.search(text):
        text = _EXPONENT.sub(lambda m: f"{m.group(1)}^{m.group(2).translate(_SUPERSCRIPTS)}", text)
    text = unicodedata.normalize(form, text)
    # str.translate looks every character up in a dict; a search first is much faster on clean text.
    if quotes and _QUOTE_CHARS.search(text):
        text = text.translate(_QUOTES)
    if dashes and _DASH_CHARS.search(text):
        text = _EM_DASH.sub(" - ", _EM_DASH_RANGE.sub("-", text))
        text = text.translate(_DASHES).replace("\u2044", "/")
    return _INVISIBLE.sub("", text)


def normalize_whitespace(text: str, keep_paragraphs: bool = True) -> str:
    """One space between words, trimmed lines, at most one blank line between paragraphs (or, without
    `keep_paragraphs`, a single line), and no space left before punctuation or inside brackets."""
    if keep_paragraphs:
        if "\r" in text or "\u2028" in text or "\u2029" in text or "\x85" in text:
            text = _LINE_BREAKS.sub("\n", text)
        text = _SPACES.sub(" ", text)
        if "\n" in text:
            text = "\n".join(line.strip(" ") for line in text.split("\n"))
            text = _BLANK_LINES.sub("\n\n", text)
    else:
        text = " ".join(text.split())
    text = _SPACE_BEFORE_PUNCT.sub(_space_before_punctuation, text)
    if "( " in text or "[ " in text:
        text = _SPACE_AFTER_OPENING.sub(r"\1", text)
    if " )" in text or " ]" in text:
        text = _SPACE_BEFORE_CLOSING.sub("", text)
    return text.strip()


def _space_before_punctuation(match: re.Match[str]) -> str:
    start = match.start()
    return "" if start and _ATTACHES.match(match.string, start - 1) else match.group(0)
