"""The token-classification route to gene recognition for encoder (BERT-style) models: per-token BIO labels
become character spans, spans become mentions, and mentions are scored like a generated gene list (and,
strictly, span by span).

Label convention: B-X opens an entity of type X, I-X continues one of the same type (an I-X after O or
after another type opens one, as conlleval does), O and special tokens (offset (0, 0)) are outside.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from forge.evaluate.genes import GeneCounts

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


def mentions(text: str, spans: Iterable[tuple[int, int] | tuple[int, int, str]]) -> list[str]:
    """The text of each span, stripped."""
    return [text[s[0]:s[1]].strip() for s in spans if text[s[0]:s[1]].strip()]


def span_counts(predicted: Iterable[Span], gold: Iterable[Span]) -> GeneCounts:
    """Strict span matching: a predicted span is right only with exactly a gold span's boundaries."""
    p, g = {(s[0], s[1]) for s in predicted}, {(s[0], s[1]) for s in gold}
    tp = len(p & g)
    return GeneCounts(tp=tp, fp=len(p) - tp, fn=len(g) - tp)


def predict_spans(model: Any, tokenizer: Any, text: str, max_length: int = 512) -> list[tuple[int, int, str]]:
    """Entity spans an AutoModelForTokenClassification predicts for a text (argmax label per token)."""
    import torch

    encoded = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
    offsets = [tuple(int(v) for v in pair) for pair in encoded.pop("offset_mapping")[0].tolist()]
    device = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(**{k: v.to(device) for k, v in encoded.items()}).logits[0]
    id2label = model.config.id2label
    labels = [str(id2label[int(i)]) for i in logits.argmax(-1).tolist()]
    return bio_spans(labels, offsets, text)


def has_bio_labels(model: Any) -> bool:
    """Whether a model's labels are BIO tags (B-X / I-X / O), i.e. it can take the token route."""
    names = {str(v) for v in getattr(getattr(model, "config", None), "id2label", {}).values()}
    return any(n.startswith("B-") for n in names) and "O" in names
