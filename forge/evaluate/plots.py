"""The report's figures: one PNG per task, its metrics as bars for the fine-tuned model and the baseline with
the report's bootstrap intervals (at `bootstrap.CONFIDENCE`) as error bars. matplotlib draws off-screen
(Agg), so no display is needed.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

# series label -> metric -> (value, ci_low, ci_high)
Series = Mapping[str, Mapping[str, tuple[float, float, float]]]
COLORS = ("#3b6ea8", "#c9803a", "#6a9a58")


def bar_chart(path: Path, title: str, metrics: Sequence[str], series: Series, ylabel: str = "",
              unit_interval: bool = False) -> Path:
    """Grouped bars (one group per metric, one bar per series) with error bars; returns the file written.
    unit_interval: the metrics are fractions (axis 0..1); otherwise values that differ by more than 20x
    (a base model's perplexity beside a tuned one's) get a log axis so both bars stay readable."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg; pyplot's global state is not touched

    figure = Figure(figsize=(max(4.0, 1.6 * len(metrics) + 2.0), 3.4), dpi=110)
    axes = figure.subplots()
    labels = list(series)
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        values = [series[label].get(m, (math.nan, math.nan, math.nan)) for m in metrics]
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(metrics))]
        heights = [v[0] for v in values]
        errors = [[_gap(v[0], v[1]) for v in values], [_gap(v[2], v[0]) for v in values]]
        bars = axes.bar(xs, heights, width * 0.95, yerr=errors, capsize=4, label=label, color=COLORS[i % len(COLORS)])
        axes.bar_label(bars, labels=[_fmt(h) for h in heights], padding=2, fontsize=8)
    axes.set_xticks(range(len(metrics)), list(metrics))
    axes.set_title(title)
    if ylabel:
        axes.set_ylabel(ylabel)
    positive = [v[0] for s in series.values() for v in s.values() if math.isfinite(v[0]) and v[0] > 0]
    if unit_interval:
        axes.set_ylim(0.0, 1.1)
    elif positive and max(positive) / min(positive) > 20:
        axes.set_yscale("log")
        axes.set_ylim(min(positive) / 2, max(positive) * 3)
    else:
        axes.margins(y=0.15)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _gap(a: float, b: float) -> float:
    return max(0.0, a - b) if math.isfinite(a) and math.isfinite(b) else 0.0


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return ""
    return f"{value:.3g}" if abs(value) >= 1 else f"{value:.3f}"
