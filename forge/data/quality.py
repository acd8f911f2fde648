"""Checks for the `filter_quality` step: an English-language heuristic.

The heuristic is the share of common English function words among a text's words. Scientific English
scores 0.2-0.4 even with dense gene names; German, French or Spanish text scores near zero. It needs no
model and no dependency, which a language-id library would not give us.
"""
from __future__ import annotations

import re

ENGLISH_FUNCTION_WORDS = frozenset(
    "a about after against all also an and are as at be been before being between both but by can could did do "
    "does during each from had has have here how if in into is it its may more most no not of on or other our "
    "over should such than that the their them then there these they this those through to under was we were "
    "what when where which while who whose will with within would".split())
_WORDS = re.compile(r"[^\W\d_]+")
_NON_LATIN_LETTER = re.compile(r"[^\W\d_A-Za-z\u00c0-\u024f]")


def _function_word_share(words: list[str]) -> float:
    return sum(w in ENGLISH_FUNCTION_WORDS for w in words) / len(words) if words else 0.0


def looks_english(text: str, min_ratio: float = 0.1, min_words: int = 20) -> bool:
    """Whether the text reads as English: mostly Latin letters and, from `min_words` words on, at least
    `min_ratio` English function words (shorter texts get the benefit of the doubt)."""
    words = _WORDS.findall(text.lower())
    if not text.isascii():
        foreign = len(_NON_LATIN_LETTER.findall(text))
        if foreign and foreign * 2 > sum(map(len, words)):
            return False
    return len(words) < min_words or _function_word_share(words) >= min_ratio
