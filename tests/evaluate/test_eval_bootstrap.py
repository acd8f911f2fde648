"""Paired bootstrap: identical systems are not significantly different, clearly different ones are, the result
is reproducible from the seed, and ratio metrics are recomputed from resampled sums."""
from __future__ import annotations

import math

import numpy as np
import pytest

from forge.evaluate.bootstrap import (BETTER, NO_DIFFERENCE, SMALL_SAMPLE, TOO_FEW, WORSE, interval, mean_of,
                                      paired_bootstrap, verdict)
from forge.evaluate.genes import GeneCounts, f1_statistic, units
from forge.evaluate.perplexity import perplexity_statistic


def test_identical_systems_are_not_significantly_different() -> None:
    scores = np.random.default_rng(1).uniform(size=40)
    c = paired_bootstrap(scores, scores.copy(), mean_of(0), metric="rouge1", higher_is_better=True, seed=3)
    # every resample takes the same examples from both: each difference is exactly 0
    assert (c.difference, c.ci_low, c.ci_high) == (0.0, 0.0, 0.0)
    assert c.verdict == NO_DIFFERENCE and c.relative_change == 0.0
    assert c.examples == 40 and c.samples == 1000


def test_clearly_different_systems_are_significant() -> None:
    # tuned right on every example, baseline on none: every resample's difference is 1 - 0 = 1
    c = paired_bootstrap(np.ones(30), np.zeros(30), mean_of(0), metric="qa_exact_match", higher_is_better=True)
    assert (c.tuned, c.baseline, c.difference, c.ci_low, c.ci_high) == (1.0, 0.0, 1.0, 1.0, 1.0)
    assert c.verdict == BETTER and c.relative_change is None  # no relative change from 0
    # the same numbers for a metric where lower is better is a significant loss
    assert paired_bootstrap(np.ones(30), np.zeros(30), mean_of(0), metric="m", higher_is_better=False).verdict == WORSE


def test_a_consistent_small_gain_is_significant_because_pairs_are_kept() -> None:
    # examples vary a lot (0..1) but the tuned model is 0.05 better on every one: pairing cancels the spread
    rng = np.random.default_rng(0)
    baseline = rng.uniform(size=50)
    tuned = baseline + 0.05
    c = paired_bootstrap(tuned, baseline, mean_of(0), metric="rouge1", higher_is_better=True, seed=0)
    assert c.difference == pytest.approx(0.05)
    assert c.ci_low == pytest.approx(0.05) and c.ci_high == pytest.approx(0.05) and c.verdict == BETTER


def test_two_examples_by_hand() -> None:
    # tuned [1, 0], baseline [0, 0]: a resample of 2 draws example 1 twice (mean difference 1, probability
    # 1/4), example 2 twice (0, 1/4) or one of each (0.5, 1/2). The 2.5th percentile is 0 and the 97.5th is 1,
    # so the interval is [0, 1]; with 2 units (fewer than 20) no verdict is given at all
    c = paired_bootstrap([1.0, 0.0], [0.0, 0.0], mean_of(0), metric="m", higher_is_better=True, seed=7)
    assert c.difference == 0.5
    assert (c.ci_low, c.ci_high) == (0.0, 1.0)
    assert c.verdict == SMALL_SAMPLE and c.units == 2


def test_seeded_and_reproducible() -> None:
    rng = np.random.default_rng(5)
    tuned, baseline = rng.normal(1.0, 1.0, 60), rng.normal(0.8, 1.0, 60)
    first = paired_bootstrap(tuned, baseline, mean_of(0), metric="m", higher_is_better=True, seed=11)
    again = paired_bootstrap(tuned, baseline, mean_of(0), metric="m", higher_is_better=True, seed=11)
    other = paired_bootstrap(tuned, baseline, mean_of(0), metric="m", higher_is_better=True, seed=12)
    assert first == again
    assert (first.ci_low, first.ci_high) != (other.ci_low, other.ci_high)
    assert first.ci_low < first.difference < first.ci_high


def test_too_few_examples_and_mismatched_sets() -> None:
    c = paired_bootstrap([0.5], [0.2], mean_of(0), metric="m", higher_is_better=True)
    assert c.verdict == TOO_FEW and math.isnan(c.ci_low) and c.samples == 0
    with pytest.raises(ValueError, match="same examples"):
        paired_bootstrap([1.0, 2.0], [1.0], mean_of(0), metric="m", higher_is_better=True)
    assert all(math.isnan(v) for v in interval(np.array([[1.0]]), mean_of(0)))


@pytest.mark.parametrize("low,high,higher,expected", [
    (0.1, 0.3, True, BETTER), (0.1, 0.3, False, WORSE),  # the interval is above 0
    (-0.3, -0.1, False, BETTER), (-0.3, -0.1, True, WORSE),  # below 0: a perplexity drop is better
    (-0.1, 0.2, True, NO_DIFFERENCE), (0.0, 0.2, True, NO_DIFFERENCE),  # holds 0 (an end at 0 counts)
    (math.nan, 0.2, True, NO_DIFFERENCE),
])
def test_verdict(low: float, high: float, higher: bool, expected: str) -> None:
    assert verdict(low, high, higher) == expected


def test_ratio_metrics_are_recomputed_from_resampled_sums() -> None:
    # perplexity units (NLL sum, tokens): tuned exp(6/6) = e, baseline exp(12/6) = e^2 on the same documents.
    # A resample of documents keeps NLL/token at 1 (tuned) and 2 (baseline) in every draw here, because each
    # document has the same NLL per token: the interval of the difference is the point difference e - e^2.
    tuned = np.array([[2.0, 2.0], [4.0, 4.0]] * 10)  # 20 documents: enough for a verdict
    baseline = np.array([[4.0, 2.0], [8.0, 4.0]] * 10)
    c = paired_bootstrap(tuned, baseline, perplexity_statistic, metric="perplexity", higher_is_better=False)
    assert c.tuned == pytest.approx(math.e) and c.baseline == pytest.approx(math.e ** 2)
    assert c.ci_low == pytest.approx(math.e - math.e ** 2) and c.ci_high == pytest.approx(math.e - math.e ** 2)
    assert c.verdict == BETTER
    assert c.relative_change == pytest.approx((math.e - math.e ** 2) / math.e ** 2)
    # micro F1 from summed counts, not a mean of per-example F1
    counts = units([GeneCounts(2, 2, 1), GeneCounts(1, 0, 1)])  # summed tp 3, fp 2, fn 2: F1 = 0.6
    low, high = interval(counts, f1_statistic, samples=500, seed=0)
    assert low <= 0.6 <= high


def test_the_interval_uses_the_same_draws_as_the_comparison() -> None:
    rng = np.random.default_rng(2)
    tuned = rng.uniform(size=25)
    # a comparison against a constant baseline of zeros moves by exactly the tuned model's own interval
    c = paired_bootstrap(tuned, np.zeros(25), mean_of(0), metric="m", higher_is_better=True, seed=4, samples=300)
    assert (c.ci_low, c.ci_high) == pytest.approx(interval(tuned, mean_of(0), seed=4, samples=300))
