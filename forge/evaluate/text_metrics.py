"""Reference-based text metrics: ROUGE-1/2/L F-measure for summaries (Google's rouge-score package, the
reference implementation of ROUGE-1.5.5 in Python) and SQuAD's exact match and token F1 for answers.

With several references an example takes its best score against any of them, as SQuAD and
`RougeScorer.score_multi` do.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


@lru_cache(maxsize=1)
def _scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def rouge(prediction: str, references: str | Sequence[str]) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures (0..1) of one prediction, best over the references."""
    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        raise ValueError("ROUGE needs at least one reference")
    scores = _scorer().score_multi(refs, prediction)
    return {name: float(scores[name].fmeasure) for name in ROUGE_TYPES}


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, references: str | Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised reference, else 0.0."""
    refs = [references] if isinstance(references, str) else list(references)
    return float(any(normalize_answer(prediction) == normalize_answer(r) for r in refs))


def token_f1(prediction: str, references: str | Sequence[str]) -> float:
    """SQuAD token F1 (bag of normalised words), best over the references; two empty answers score 1."""
    refs = [references] if isinstance(references, str) else list(references)
    return max((_f1(normalize_answer(prediction).split(), normalize_answer(r).split()) for r in refs), default=0.0)


def _f1(predicted: list[str], gold: list[str]) -> float:
    if not predicted or not gold:
        return float(predicted == gold)
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)
