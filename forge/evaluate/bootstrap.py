"""Paired bootstrap for A/B comparison: resample examples (the same indices for both models), recompute the
metric on each resample, and read a 95 % confidence interval of the difference tuned - baseline.

A metric is a `Statistic`: a function of an array of per-example units of shape (..., n, k) that returns
shape (...). Ratio metrics (perplexity, micro F1) are recomputed from resampled sums, never averaged.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Statistic = Callable[[np.ndarray], np.ndarray]
BETTER, WORSE, NO_DIFFERENCE, TOO_FEW = ("significantly better", "significantly worse",
                                         "no significant difference", "too few examples")
CONFIDENCE = 0.95


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def mean_of(column: int) -> Statistic:
    """The mean of one column of the units (ROUGE, exact match, token F1)."""
    return lambda units: units[..., column].mean(axis=-1)


def paired_bootstrap(tuned: np.ndarray, baseline: np.ndarray, statistic: Statistic, *, metric: str,
                     higher_is_better: bool, samples: int = 1000, seed: int = 0) -> Comparison:
    """Compare two models on the same n examples; row i of both arrays is example i."""
    tuned, baseline = _units(tuned), _units(baseline)
    if tuned.shape[0] != baseline.shape[0]:
        raise ValueError(f"paired bootstrap needs the same examples: {tuned.shape[0]} vs {baseline.shape[0]}")
    n = tuned.shape[0]
    a = float(statistic(tuned)) if n else float("nan")
    b = float(statistic(baseline)) if n else float("nan")
    difference = a - b
    relative = difference / b if n and b != 0.0 and np.isfinite(b) else None
    if n < 2:
        return Comparison(metric, a, b, difference, float("nan"), float("nan"), relative, higher_is_better, TOO_FEW,
                          n, 0)
    rng = np.random.default_rng(seed)
    index = rng.integers(0, n, size=(samples, n))
    with np.errstate(divide="ignore", invalid="ignore"):
        diffs = statistic(tuned[index]) - statistic(baseline[index])
    tail = (1.0 - CONFIDENCE) / 2 * 100
    low, high = (float(v) for v in np.nanpercentile(diffs, [tail, 100 - tail]))
    return Comparison(metric, a, b, difference, low, high, relative, higher_is_better,
                      verdict(low, high, higher_is_better), n, samples)


def interval(units: np.ndarray, statistic: Statistic, *, samples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """The 95 % percentile bootstrap interval of one model's metric (nan with fewer than 2 examples)."""
    units = _units(units)
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
