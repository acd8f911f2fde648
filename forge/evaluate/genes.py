"""Gene-name recognition scoring: count true positives, false positives and false negatives of the names a
model gave against gold annotations, for precision, recall and F1. Reading a model's answer and the key two
spellings share live in `forge.data.gene_mentions`, which training data and serving use too.

Normalisation (`normalize_symbol`): Unicode NFKC, case folded, Greek letters spelled out (TNF-α = TNF-alpha =
TNF alpha), every character other than a-z and 0-9 dropped (IL-6 = IL6 = il 6); a gold gene's aliases (from
the data) count as the gene. A name predicted twice counts once.

Convention for empty sets: a ratio whose denominator is 0 is 1 when both the gold and the predicted sets
are empty (nothing to find, nothing claimed) and 0 otherwise; F1 is 0 when precision + recall is 0.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from forge.data.gene_mentions import normalize_symbol


@dataclass(frozen=True)
class GoldGene:
    """A gold gene: the symbol it is scored as and the other names that count as it."""

    symbol: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class GeneCounts:
    """Counts of one example (or a sum over examples)."""

    tp: int
    fp: int
    fn: int

    def __add__(self, other: GeneCounts) -> GeneCounts:
        return GeneCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp, self.fn)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn, self.fp)

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _ratio(hits: int, total: int, others: int) -> float:
    if total:
        return hits / total
    return 1.0 if others == 0 else 0.0


def gold_genes(genes: Iterable[GoldGene | str | object]) -> list[GoldGene]:
    """Gold genes from symbols, GoldGenes or anything with `.symbol` and `.aliases` (a paper's annotations)."""
    out = []
    for gene in genes:
        if isinstance(gene, str):
            out.append(GoldGene(gene))
        else:
            out.append(GoldGene(str(getattr(gene, "symbol")), tuple(getattr(gene, "aliases", ()) or ())))
    return out


def score_example(predicted: Iterable[str], gold: Sequence[GoldGene | str], *,
                  aliases: Mapping[str, str] | None = None) -> GeneCounts:
    """Counts of one example. `aliases` (name -> symbol) adds names valid for every example."""
    golds = gold_genes(gold)
    canonical: dict[str, str] = {normalize_symbol(k): normalize_symbol(v) for k, v in (aliases or {}).items()}
    for gene in golds:  # the example's own aliases win over a shared table
        symbol = normalize_symbol(gene.symbol)
        canonical.update({normalize_symbol(a): symbol for a in gene.aliases if normalize_symbol(a)})
    canonical.update({normalize_symbol(g.symbol): normalize_symbol(g.symbol) for g in golds})  # a symbol is itself
    gold_keys = {normalize_symbol(g.symbol) for g in golds} - {""}
    keys = {canonical.get(k, k) for k in map(normalize_symbol, predicted)} - {""}
    tp = len(keys & gold_keys)
    return GeneCounts(tp=tp, fp=len(keys) - tp, fn=len(gold_keys) - tp)


def micro(counts: Sequence[GeneCounts]) -> GeneCounts:
    """Counts summed over a set: micro-averaged precision, recall and F1 follow from them."""
    total = GeneCounts(0, 0, 0)
    for c in counts:
        total = total + c
    return total


def units(counts: Sequence[GeneCounts]) -> np.ndarray:
    """Per-example bootstrap units: rows of (tp, fp, fn)."""
    return np.array([[c.tp, c.fp, c.fn] for c in counts], dtype=np.float64).reshape(-1, 3)


def _sums(units: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return units[..., 0].sum(axis=-1), units[..., 1].sum(axis=-1), units[..., 2].sum(axis=-1)


def _vector_ratio(hits: np.ndarray, total: np.ndarray, others: np.ndarray) -> np.ndarray:
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, hits / safe, np.where(others == 0, 1.0, 0.0))


def precision_statistic(units: np.ndarray) -> np.ndarray:
    tp, fp, fn = _sums(units)
    return _vector_ratio(tp, tp + fp, fn)


def recall_statistic(units: np.ndarray) -> np.ndarray:
    tp, fp, fn = _sums(units)
    return _vector_ratio(tp, tp + fn, fp)


def f1_statistic(units: np.ndarray) -> np.ndarray:
    """Micro F1 of (resampled) examples, from their summed counts."""
    p, r = precision_statistic(units), recall_statistic(units)
    total = p + r
    return np.where(total > 0, 2 * p * r / np.where(total > 0, total, 1.0), 0.0)
