"""Paired bootstrap for A/B comparison: resample the independent units (papers; the same draws for both
models), recompute the metric on each resample, and read a percentile confidence interval (at the level
`CONFIDENCE`, the only place it is written) of the difference tuned - baseline.

A metric is a `Statistic`: a function of an array of per-example rows of shape (..., n, k) that returns shape
(...). Every statistic is a function of column sums (perplexity from summed NLL and tokens, micro F1 from summed
counts, a mean from a summed value and a count column), so the examples of one paper are summed into one row
and resampled together: a paper's questions or chunks are not independent of each other.

With fewer than `MIN_UNITS` units the intervals are rough and no "significant" verdict is given.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Statistic = Callable[[np.ndarray], np.ndarray]
BETTER, WORSE, NO_DIFFERENCE, TOO_FEW = ("significantly better", "significantly worse",
                                         "no significant difference", "too few examples")
SMALL_SAMPLE = "small sample: no verdict"
NOT_COMPARABLE = "not comparable"
CONFIDENCE = 0.95
MIN_UNITS = 20  # fewer independent units: a percentile bootstrap interval is too rough for a verdict


def confidence_label(level: float = CONFIDENCE) -> str:
    """The confidence level as the report writes it ('95 %')."""
    return f"{level * 100:g} %"


@dataclass(frozen=True)
class Comparison:
    """The difference tuned - baseline of one metric, its bootstrap interval and what it means."""

    metric: str
    tuned: float
    baseline: float
    difference: float
    ci_low: float
    ci_high: float
    relative_change: float | None
    higher_is_better: bool
    verdict: str
    examples: int
    samples: int
    units: int = 0  # independent units resampled (papers, or BC2GM sentences)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mean_of(column: int, count_column: int | None = None) -> Statistic:
    """The mean of one column of the rows (ROUGE, exact match, token F1). With a count column (1 per example),
    the mean is sum / count, which stays right when a paper's examples are summed into one row."""
    if count_column is None:
        return lambda units: units[..., column].mean(axis=-1)
    return lambda units: units[..., column].sum(axis=-1) / units[..., count_column].sum(axis=-1)


def cluster(rows: np.ndarray, groups: Sequence[str] | None) -> np.ndarray:
    """Rows summed per group (in order of first appearance): one row per independent unit. No groups: every
    row is its own unit."""
    rows = _units(rows)
    if groups is None:
        return rows
    if len(groups) != rows.shape[0]:
        raise ValueError(f"{len(groups)} groups for {rows.shape[0]} rows")
    order: dict[str, int] = {}
    index = np.array([order.setdefault(g, len(order)) for g in groups], dtype=np.int64)
    out = np.zeros((len(order), rows.shape[1]), dtype=np.float64)
    np.add.at(out, index, rows)
    return out


def paired_bootstrap(tuned: np.ndarray, baseline: np.ndarray, statistic: Statistic, *, metric: str,
                     higher_is_better: bool, samples: int = 1000, seed: int = 0,
                     groups: Sequence[str] | None = None) -> Comparison:
    """Compare two models on the same n examples; row i of both arrays is example i, and groups[i] the unit
    (paper) it belongs to: units are resampled whole, the same draws for both models."""
    tuned, baseline = _units(tuned), _units(baseline)
    if tuned.shape[0] != baseline.shape[0]:
        raise ValueError(f"paired bootstrap needs the same examples: {tuned.shape[0]} vs {baseline.shape[0]}")
    examples = tuned.shape[0]
    tuned, baseline = cluster(tuned, groups), cluster(baseline, groups)
    n = tuned.shape[0]
    a = float(statistic(tuned)) if n else float("nan")
    b = float(statistic(baseline)) if n else float("nan")
    difference = a - b
    relative = difference / b if n and b != 0.0 and np.isfinite(b) else None
    if n < 2:
        return Comparison(metric, a, b, difference, float("nan"), float("nan"), relative, higher_is_better, TOO_FEW,
                          examples, 0, n)
    index = np.random.default_rng(seed).integers(0, n, size=(samples, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        diffs = statistic(tuned[index]) - statistic(baseline[index])
    tail = (1.0 - CONFIDENCE) / 2 * 100
    low, high = (float(v) for v in np.nanpercentile(diffs, [tail, 100 - tail]))
    outcome = verdict(low, high, higher_is_better) if n >= MIN_UNITS else SMALL_SAMPLE
    return Comparison(metric, a, b, difference, low, high, relative, higher_is_better, outcome, examples, samples, n)


def interval(units: np.ndarray, statistic: Statistic, *, samples: int = 1000, seed: int = 0,
             groups: Sequence[str] | None = None) -> tuple[float, float]:
    """The percentile bootstrap interval (at CONFIDENCE) of one model's metric, resampling whole groups; nan
    with fewer than 2 units."""
    units = cluster(units, groups)
    n = units.shape[0]
    if n < 2:
        return float("nan"), float("nan")
    index = np.random.default_rng(seed).integers(0, n, size=(samples, n))  # the indices paired_bootstrap draws
    with np.errstate(divide="ignore", invalid="ignore"):
        values = statistic(units[index])
    tail = (1.0 - CONFIDENCE) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def verdict(low: float, high: float, higher_is_better: bool) -> str:
    """Significant when the interval excludes 0; better or worse by the metric's direction."""
    if not (np.isfinite(low) and np.isfinite(high)) or low <= 0.0 <= high:
        return NO_DIFFERENCE
    increased = low > 0.0
    return BETTER if increased == higher_is_better else WORSE


def _units(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    return array.reshape(-1, 1) if array.ndim == 1 else array
