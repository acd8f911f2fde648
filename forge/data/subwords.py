"""Words to sub-word tokens for token classification, the same way in training, evaluation and serving: the
words are joined with single spaces, tokenized with character offsets, and each token is traced back to its
word. A word's label goes to its first sub-token; its other sub-tokens and the special tokens get -100 (left
out of the loss), so the model is trained, and read, once per word.

Raw text (serving) is cut into words first: runs of letters, digits and underscores, and every other
non-space character alone, which is how BC2GM-IOB and JNLPBA tokenize ("IL-2" is IL, -, 2).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

IGNORE = -100  # the label the loss (and seqeval's reading) skips
Span = tuple[int, int]  # character offsets [start, end)
_WORD = re.compile(r"\w+|[^\w\s]")


def split_words(text: str) -> list[Span]:
    """The words of raw text as character spans."""
    return [m.span() for m in _WORD.finditer(text)]


def join_words(words: Sequence[str]) -> tuple[str, list[Span]]:
    """The words joined by single spaces, and each word's span in that text."""
    spans, position = [], 0
    for word in words:
        spans.append((position, position + len(word)))
        position += len(word) + 1
    return " ".join(words), spans


def token_words(offsets: Sequence[Span], word_spans: Sequence[Span]) -> list[int | None]:
    """The word of each token (None for a special token, or one that holds only spaces): the word of the
    token's first character that belongs to a word."""
    owner: dict[int, int] = {}
    for index, (start, end) in enumerate(word_spans):
        for position in range(start, end):
            owner[position] = index
    found: list[int | None] = []
    for start, end in offsets:
        found.append(next((owner[p] for p in range(start, end) if p in owner), None))
    return found


def first_subtoken_labels(words_of_tokens: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Each token's training label: its word's label on the word's first sub-token, IGNORE elsewhere."""
    labels, previous = [], None
    for word in words_of_tokens:
        labels.append(word_labels[word] if word is not None and word != previous else IGNORE)
        if word is not None:
            previous = word
    return labels


def encode_words(tokenizer: Any, words: Sequence[str], max_length: int,
                 word_labels: Sequence[int] | None = None) -> dict[str, Any]:
    """input_ids and attention_mask of the words (truncated to max_length tokens), each token's word, and, with
    word_labels, the token labels (first sub-token labelled, the rest IGNORE)."""
    text, spans = join_words(words)
    encoded = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=max_length)
    owners = token_words([tuple(o) for o in encoded.pop("offset_mapping")], spans)
    out = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"], "word_ids": owners}
    if word_labels is not None:
        out["labels"] = first_subtoken_labels(owners, word_labels)
    return out
