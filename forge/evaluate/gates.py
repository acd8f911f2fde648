"""Quality gates: the recipe's thresholds checked against the report's metrics, each with its outcome.

`decrease_by`/`increase_by` compare the fine-tuned model with the baseline as a fraction (decrease_by 0.10:
at least 10 % lower); `not_decrease`/`not_increase` allow a change of at most `value` (a fraction, 0 by
default) the wrong way, plus `tolerance` in the metric's own units (not_decrease with tolerance 0.02: an
accuracy may fall at most 2 points); `at_most`/`at_least` compare with a fixed bound. A value equal to the
threshold passes (up to a relative 1e-9, so that 6.3 passes `decrease_by 0.1` against 7.0 whatever the float
rounding of 7.0 x 0.9). Gates read point estimates, so a gate's outcome is the same on every run of the same
numbers; the A/B verdict is shown beside it. A relative gate on a metric the two models cannot be compared by
(perplexity across tokenizers) fails with the reason.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from forge.evaluate.catalog import METRICS
from forge.evaluate.general import is_general_metric

RELATIVE = ("decrease_by", "increase_by", "not_decrease", "not_increase")
EQUAL_TOLERANCE = 1e-9  # relative: a value equal to its threshold up to float rounding passes


@dataclass(frozen=True)
class GateOutcome:
    """One gate: what it asked, what was measured, and whether it passed (with the reason)."""

    metric: str
    must: str
    value: float
    passed: bool
    tuned: float | None
    baseline: float | None
    threshold: float | None
    reason: str
    tolerance: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {gate_label(self.to_dict())}: {self.reason}"


def gate_label(gate: Mapping[str, Any]) -> str:
    """`metric must value`, and `, tolerance t` when the gate has one: how reports and messages name a gate."""
    label = f"{gate['metric']} {gate['must']} {gate['value']:g}"
    return label + (f", tolerance {gate['tolerance']:g}" if gate.get("tolerance") else "")


def check_gate(gate: Any, metrics: Mapping[str, Mapping[str, Any]]) -> GateOutcome:
    """One gate (anything with metric, must, value) against {metric: {"tuned": x, "baseline": y}}."""
    metric, must, value = str(_get(gate, "metric")), str(_get(gate, "must")), float(_get(gate, "value", 0.0))
    tolerance = float(_get(gate, "tolerance", 0.0) or 0.0)

    def outcome(passed: bool, reason: str, tuned: float | None = None, baseline: float | None = None,
                threshold: float | None = None) -> GateOutcome:
        return GateOutcome(metric, must, value, passed, tuned, baseline, threshold, reason, tolerance)

    if metric not in metrics:
        known = ", ".join(sorted(metrics)) or "none"
        hint = "" if metric in METRICS or is_general_metric(metric) else " (not a Forge metric)"
        return outcome(False, f"metric {metric!r} is not in the report{hint}; reported: {known}")
    tuned = _number(metrics[metric].get("tuned"))
    baseline = _number(metrics[metric].get("baseline"))
    if tuned is None:
        return outcome(False, "no value was measured", tuned, baseline)
    if must == "at_most":
        ok = _at_most(tuned, value)
        return outcome(ok, f"{tuned:.6g} {'<=' if ok else '>'} {value:g}", tuned, baseline, value)
    if must == "at_least":
        ok = _at_most(value, tuned)
        return outcome(ok, f"{tuned:.6g} {'>=' if ok else '<'} {value:g}", tuned, baseline, value)
    if must not in RELATIVE:
        return outcome(False, f"unknown condition {must!r}", tuned, baseline)
    refused = metrics[metric].get("not_comparable")
    if refused:
        return outcome(False, f"not comparable with the baseline: {refused}", tuned, baseline)
    if baseline is None:
        return outcome(False, "needs a baseline: set evaluation.compare_with (e.g. base)", tuned, baseline)
    lower = must in ("decrease_by", "not_increase")
    factor = {"decrease_by": 1 - value, "increase_by": 1 + value,
              "not_decrease": 1 - value, "not_increase": 1 + value}[must]
    threshold = baseline * factor
    if must in ("not_decrease", "not_increase"):
        threshold += tolerance if lower else -tolerance
    passed = _at_most(tuned, threshold) if lower else _at_most(threshold, tuned)
    change = f"{(tuned - baseline) / baseline:+.1%}" if baseline else f"{tuned - baseline:+.6g}"
    sign = ("<=" if passed else ">") if lower else (">=" if passed else "<")
    return outcome(passed, f"{tuned:.6g} vs baseline {baseline:.6g} ({change}); {tuned:.6g} {sign} {threshold:.6g}",
                   tuned, baseline, threshold)


def check_gates(gates: Sequence[Any], metrics: Mapping[str, Mapping[str, Any]]) -> list[GateOutcome]:
    """Every gate's outcome, in recipe order."""
    return [check_gate(g, metrics) for g in gates]


def all_passed(outcomes: Sequence[GateOutcome | Mapping[str, Any]]) -> bool:
    """True when every gate passed (and when there are none)."""
    return all(o["passed"] if isinstance(o, Mapping) else o.passed for o in outcomes)


def _at_most(a: float, b: float) -> bool:
    """a <= b, where a equal to b up to float rounding counts as equal."""
    return a <= b or math.isclose(a, b, rel_tol=EQUAL_TOLERANCE, abs_tol=1e-12)


def _get(gate: Any, key: str, default: Any = None) -> Any:
    if isinstance(gate, Mapping):
        return gate.get(key, default)
    return getattr(gate, key, default)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number
