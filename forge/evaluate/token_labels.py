"""The token-classification route to gene recognition for encoder (BERT-style) models: per-token BIO labels
become character spans (forge/model/tagging.py), spans become mentions, and mentions are scored like a
generated gene list (and, strictly, span by span).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from forge.evaluate.genes import GeneCounts
from forge.model.tagging import Span, bio_spans


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
