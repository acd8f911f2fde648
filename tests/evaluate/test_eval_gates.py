"""Quality gates against hand-computed thresholds: a gate that should fail does fail, with a reason."""
from __future__ import annotations

import pytest

from forge.evaluate.gates import all_passed, check_gate, check_gates

METRICS = {
    "perplexity": {"tuned": 44.9, "baseline": 50.0},
    "gene_f1": {"tuned": 0.58, "baseline": 0.60},
    "rouge1": {"tuned": 0.30, "baseline": None},
    "qa_f1": {"tuned": None, "baseline": 0.2},
}


def gate(metric: str, must: str, value: float = 0.0) -> dict:
    return {"metric": metric, "must": must, "value": value}


@pytest.mark.parametrize("spec,passed,threshold", [
    # perplexity must drop by 10 %: threshold 50 x (1 - 0.10) = 45; 44.9 <= 45 passes
    (gate("perplexity", "decrease_by", 0.10), True, 45.0),
    # by 20 %: threshold 50 x 0.8 = 40; 44.9 > 40 fails
    (gate("perplexity", "decrease_by", 0.20), False, 40.0),
    # gene F1 must not fall: threshold 0.60 x (1 - 0) = 0.60; 0.58 < 0.60 fails
    (gate("gene_f1", "not_decrease"), False, 0.60),
    # ... by more than 5 %: threshold 0.60 x 0.95 = 0.57; 0.58 >= 0.57 passes
    (gate("gene_f1", "not_decrease", 0.05), True, 0.57),
    # gene F1 must rise by 10 %: threshold 0.60 x 1.1 = 0.66; 0.58 fails
    (gate("gene_f1", "increase_by", 0.10), False, 0.66),
    # perplexity must not rise: threshold 50; 44.9 passes
    (gate("perplexity", "not_increase"), True, 50.0),
    # fixed bounds
    (gate("perplexity", "at_most", 45), True, 45.0),
    (gate("perplexity", "at_most", 40), False, 40.0),
    (gate("rouge1", "at_least", 0.25), True, 0.25),
    (gate("rouge1", "at_least", 0.35), False, 0.35),
])
def test_gate_by_hand(spec: dict, passed: bool, threshold: float) -> None:
    outcome = check_gate(spec, METRICS)
    assert outcome.passed is passed, outcome.reason
    assert outcome.threshold == pytest.approx(threshold)
    assert outcome.line().startswith("PASS" if passed else "FAIL")


def test_reason_reads_like_the_numbers() -> None:
    outcome = check_gate(gate("perplexity", "decrease_by", 0.2), METRICS)
    # (44.9 - 50) / 50 = -10.2 %
    assert outcome.reason == "44.9 vs baseline 50 (-10.2%); 44.9 > 40"


def test_gates_that_cannot_be_checked_fail() -> None:
    missing = check_gate(gate("gene_recall", "at_least", 0.5), METRICS)
    assert not missing.passed and "not in the report" in missing.reason
    unknown = check_gate(gate("gene_f2", "at_least", 0.5), METRICS)
    assert not unknown.passed and "not a Forge metric" in unknown.reason
    no_baseline = check_gate(gate("rouge1", "not_decrease"), METRICS)
    assert not no_baseline.passed and "needs a baseline" in no_baseline.reason
    unmeasured = check_gate(gate("qa_f1", "at_least", 0.1), METRICS)
    assert not unmeasured.passed and "no value was measured" in unmeasured.reason
    nan = check_gate(gate("perplexity", "at_most", 100), {"perplexity": {"tuned": float("nan")}})
    assert not nan.passed


def test_gates_from_a_recipe_and_all_passed() -> None:
    from forge.recipe.schema import Gate

    outcomes = check_gates([Gate(metric="perplexity", must="decrease_by", value=0.1),
                            Gate(metric="gene_f1", must="not_decrease")], METRICS)
    assert [o.passed for o in outcomes] == [True, False]
    assert not all_passed(outcomes) and not all_passed([o.to_dict() for o in outcomes])
    assert all_passed(outcomes[:1]) and all_passed([])


@pytest.mark.parametrize("spec,tuned,baseline", [
    # each tuned value equals its threshold exactly in decimal; in floats 3.0 x 0.95 = 2.8499999999999996 and
    # 3.0 x 1.1 = 3.3000000000000003, which a strict float comparison would fail
    (gate("perplexity", "decrease_by", 0.05), 2.85, 3.0),
    (gate("gene_f1", "increase_by", 0.10), 3.3, 3.0),
    (gate("gene_f1", "not_decrease", 0.30), 2.1, 3.0),
    (gate("perplexity", "not_increase", 0.20), 3.6, 3.0),
    (gate("gene_f1", "not_decrease"), 0.6, 0.6),  # no change at all
    (gate("perplexity", "not_increase"), 50.0, 50.0),
    (gate("perplexity", "at_most", 45.0), 45.0, None),
    (gate("gene_f1", "at_least", 0.58), 0.58, None),
])
def test_a_value_equal_to_the_threshold_passes(spec: dict, tuned: float, baseline: float | None) -> None:
    outcome = check_gate(spec, {spec["metric"]: {"tuned": tuned, "baseline": baseline}})
    assert outcome.passed, outcome.reason
    # and a hair past the threshold, the wrong way, fails
    worse = tuned * (1 + 1e-6) if spec["must"] in ("decrease_by", "not_increase", "at_most") else tuned * (1 - 1e-6)
    assert not check_gate(spec, {spec["metric"]: {"tuned": worse, "baseline": baseline}}).passed


def test_a_relative_gate_on_a_metric_that_cannot_be_compared_fails_with_the_reason() -> None:
    metrics = {"perplexity": {"tuned": 5.0, "baseline": 50.0, "not_comparable": "different tokenizers"}}
    outcome = check_gate(gate("perplexity", "decrease_by", 0.1), metrics)
    assert not outcome.passed and outcome.reason == "not comparable with the baseline: different tokenizers"
    assert check_gate(gate("perplexity", "at_most", 6.0), metrics).passed  # a fixed bound needs no baseline
