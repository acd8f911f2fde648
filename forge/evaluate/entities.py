"""The scores of a token classifier's mentions: entity-level precision, recall and F1 with seqeval in strict
IOB2 mode (a mention counts only with its exact words and type, as in CoNLL-2003 and the BioNLP shared tasks),
computed on word tags (each word read from its first sub-token; forge/model/tagging.py tags them).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from forge.data.subwords import IGNORE


def entity_scores(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro precision, recall and F1 over entities (seqeval, strict IOB2), from word tags per sentence."""
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    gold, predicted = [list(s) for s in gold], [list(s) for s in predicted]
    kwargs: dict[str, Any] = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    return {"entity_precision": float(precision_score(gold, predicted, **kwargs)),
            "entity_recall": float(recall_score(gold, predicted, **kwargs)),
            "entity_f1": float(f1_score(gold, predicted, **kwargs))}


def trainer_metrics(names: Sequence[str]) -> tuple[Callable[[Any], dict[str, float]], Callable[[Any, Any], Any]]:
    """(compute_metrics, preprocess_logits_for_metrics) for transformers' Trainer: entity scores of the labelled
    (first) sub-tokens, with only the argmax of the logits kept between batches."""
    def argmax(logits: Any, labels: Any) -> Any:
        return (logits[0] if isinstance(logits, tuple) else logits).argmax(-1)

    def compute(prediction: Any) -> dict[str, float]:
        gold, predicted = [], []
        for row_labels, row_predicted in zip(prediction.label_ids, prediction.predictions):
            kept = [(int(g), int(p)) for g, p in zip(row_labels, row_predicted) if g != IGNORE]
            gold.append([names[g] for g, _ in kept])
            predicted.append([names[p] for _, p in kept])
        return entity_scores(gold, predicted)

    return compute, argmax
