"""Perplexity on held-out text, token-weighted over the whole set, with a sliding window for long documents.

Every token after the first of a document is scored exactly once. The first window scores its tokens with
all the context before them; each later window moves by `stride` and scores only its last `stride` tokens,
which therefore see between window - stride and window - 1 tokens of context. The set's perplexity is
exp(sum of token NLL / number of scored tokens): long documents weigh by their tokens, which a mean of
per-document perplexities would not do.

Perplexity is per token, so two models with different tokenizers are not comparable by it. Bits per byte
(sum of NLL / ln 2 / UTF-8 bytes of the scored text) does not depend on the tokenizer, and is what such a
comparison reports instead.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Window:
    """One forward pass: tokens [begin, end) go in, tokens [first_target, end) are scored."""

    begin: int
    end: int
    first_target: int


@dataclass(frozen=True)
class DocumentScore:
    """A document's summed negative log-likelihood (nats) and how many tokens it scored."""

    nll: float
    tokens: int
    bytes: int = 0  # UTF-8 bytes of the text those tokens cover


def effective_stride(window: int, stride: int | None) -> int:
    """The stride used: default window / 2, at most window - 1 so every scored token has context."""
    if window < 2:
        raise ValueError(f"the perplexity window must hold at least 2 tokens, got {window}")
    return max(1, min(stride if stride is not None else window // 2, window - 1))


def windows(n_tokens: int, window: int, stride: int | None = None) -> list[Window]:
    """The windows that score tokens 1..n_tokens-1 of a document once each."""
    if n_tokens < 2:
        return []
    stride = effective_stride(window, stride)
    end = min(window, n_tokens)
    plan = [Window(0, end, 1)]
    while end < n_tokens:
        first = end
        end = min(first + stride, n_tokens)
        plan.append(Window(max(0, end - window), end, first))
    return plan


def score_ids(model: Any, ids: Sequence[int], window: int, stride: int | None = None) -> DocumentScore:
    """The summed NLL of a token sequence under a causal LM (anything whose call returns `.logits`)."""
    import torch

    device = _device(model)
    tensor = torch.as_tensor(list(ids), dtype=torch.long, device=device)
    nll, count = 0.0, 0
    with torch.inference_mode():
        for w in windows(len(tensor), window, stride):
            logits = model(input_ids=tensor[w.begin:w.end].unsqueeze(0)).logits[0].float()
            # position j predicts token j + 1: the targets [first_target, end) come from positions one earlier
            predicting = logits[w.first_target - w.begin - 1:w.end - w.begin - 1]
            targets = tensor[w.first_target:w.end]
            nll += float(torch.nn.functional.cross_entropy(predicting, targets, reduction="sum"))
            count += len(targets)
    return DocumentScore(nll, count)


def score_texts(model: Any, tokenizer: Any, texts: Sequence[str], window: int, stride: int | None = None,
                progress: bool = False, desc: str = "perplexity") -> list[DocumentScore]:
    """One score per text; the tokenizer adds its special tokens (a BOS gives the first word a context)."""
    from forge.console import progress_bar

    scores = []
    for text in progress_bar(texts, desc=desc, unit=" docs", disable=not progress, leave=False):
        ids = tokenizer(text, add_special_tokens=True, verbose=False)["input_ids"]
        score = score_ids(model, ids, window, stride)
        scores.append(DocumentScore(score.nll, score.tokens, scored_bytes(tokenizer, text, ids)))
    return scores


def scored_bytes(tokenizer: Any, text: str, ids: Sequence[int]) -> int:
    """UTF-8 bytes of the text the scored tokens cover: all of it after a special first token (a BOS), else
    all but the first token's text, which nothing predicts."""
    if len(ids) < 2:
        return 0
    if ids[0] in set(getattr(tokenizer, "all_special_ids", ()) or ()):
        return len(text.encode("utf-8"))
    try:
        offsets = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True,
                            verbose=False)["offset_mapping"]
        return len(text[offsets[1][0]:].encode("utf-8"))
    except NotImplementedError:  # a slow tokenizer: the first token's text, decoded
        return max(0, len(text.encode("utf-8")) - len(tokenizer.decode(ids[:1]).encode("utf-8")))


def perplexity(scores: Sequence[DocumentScore]) -> float:
    """exp(total NLL / total scored tokens); nan when nothing was scored."""
    tokens = sum(s.tokens for s in scores)
    if tokens == 0:
        return float("nan")
    mean = sum(s.nll for s in scores) / tokens
    return math.exp(mean) if mean < 700 else math.inf


def units(scores: Sequence[DocumentScore]) -> np.ndarray:
    """Per-document bootstrap units: rows of (NLL sum, token count, byte count)."""
    return np.array([[s.nll, s.tokens, s.bytes] for s in scores], dtype=np.float64).reshape(-1, 3)


def perplexity_statistic(units: np.ndarray) -> np.ndarray:
    """Perplexity of (resampled) documents from their summed NLL and token counts."""
    return np.exp(units[..., 0].sum(axis=-1) / units[..., 1].sum(axis=-1))


def bits_per_byte_statistic(units: np.ndarray) -> np.ndarray:
    """Bits per UTF-8 byte of (resampled) documents: summed NLL in bits over summed bytes."""
    return units[..., 0].sum(axis=-1) / math.log(2) / units[..., 2].sum(axis=-1)


def _device(model: Any) -> Any:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return "cpu"
