"""A token classifier as a mention finder, the same in evaluation and serving: each word gets the label of its
first sub-token (forge/data/subwords.py), and BIO tags are read as character spans.

Label convention: B-X opens an entity of type X, I-X continues one of the same type (an I-X after O or
after another type opens one, as conlleval does), O and special tokens (offset (0, 0)) are outside.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from forge.data.subwords import encode_words, split_words

BATCH = 32
Span = tuple[int, int]  # character offsets [start, end)


def bio_spans(labels: Sequence[str], offsets: Sequence[Span], text: str | None = None) -> list[tuple[int, int, str]]:
    """Entity spans (start, end, type) from one label per token and each token's character offsets; with the
    text, spaces a byte-level tokenizer keeps at a span's edges are trimmed off."""
    if len(labels) != len(offsets):
        raise ValueError(f"{len(labels)} labels for {len(offsets)} tokens")
    spans: list[tuple[int, int, str]] = []
    current: list[Any] | None = None  # [start, end, type]
    for label, (start, end) in zip(labels, offsets):
        if start == end:  # a special token: it neither opens nor closes an entity
            continue
        prefix, _, kind = label.partition("-")
        if prefix == "I" and current is not None and current[2] == kind:
            current[1] = end
            continue
        if current is not None:
            spans.append((current[0], current[1], current[2]))
            current = None
        if prefix in ("B", "I"):
            current = [start, end, kind]
    if current is not None:
        spans.append((current[0], current[1], current[2]))
    return [_trim(s, text) for s in spans] if text is not None else spans


def _trim(span: tuple[int, int, str], text: str) -> tuple[int, int, str]:
    start, end, kind = span
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end, kind


def tag_words(model: Any, tokenizer: Any, sentences: Sequence[Sequence[str]], max_length: int = 512,
              batch_size: int = BATCH) -> list[list[str]]:
    """The predicted tag of every word (its first sub-token's argmax label); words cut off by max_length get O."""
    import torch

    id2label = model.config.id2label
    device = next(model.parameters()).device
    out: list[list[str]] = []
    for begin in range(0, len(sentences), batch_size):
        chunk = sentences[begin:begin + batch_size]
        encoded = [encode_words(tokenizer, list(words), max_length) for words in chunk]
        batch = tokenizer.pad([{"input_ids": e["input_ids"], "attention_mask": e["attention_mask"]} for e in encoded],
                              return_tensors="pt")
        with torch.inference_mode():
            best = model(**{k: v.to(device) for k, v in batch.items()}).logits.argmax(-1).tolist()
        for words, e, row in zip(chunk, encoded, best):
            tags = ["O"] * len(words)
            previous = None
            for position, word in enumerate(e["word_ids"]):
                if word is not None and word != previous:
                    tags[word] = str(id2label[int(row[position])])
                if word is not None:
                    previous = word
            out.append(tags)
    return out


def find_mentions(model: Any, tokenizer: Any, texts: Sequence[str],
                  max_length: int = 512) -> list[list[tuple[int, int, str]]]:
    """Mentions (start, end, type) in raw texts, as character spans [start, end): the texts cut into words, the
    words tagged, and the tags read as IOB (an I- without its B- opens a mention, as conlleval reads it)."""
    word_spans = [split_words(text) for text in texts]
    tags = tag_words(model, tokenizer, [[text[s:e] for s, e in spans] for text, spans in zip(texts, word_spans)],
                     max_length)
    return [bio_spans(t, spans, text) for text, spans, t in zip(texts, word_spans, tags)]
