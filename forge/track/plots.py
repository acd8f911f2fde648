"""The figures of `forge runs compare`: loss curves of several runs overlaid, and their evaluation metrics as
bars (one panel per metric, the baseline as a dashed line). matplotlib draws off-screen on a bare Figure
(Agg), so no display is needed and pyplot's global state is not touched.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

COLORS = ("#3b6ea8", "#c9803a", "#6a9a58", "#a8453b", "#7b5ea7", "#4a9aa3", "#b5a03a", "#666666")
Points = Sequence[tuple[int, float]]


def color(index: int) -> str:
    return COLORS[index % len(COLORS)]


def loss_curves(path: Path, curves: Mapping[str, Mapping[str, Points]]) -> Path:
    """curves: run label -> {"loss": [(step, value)], "eval_loss": [...]}; training solid, validation dashed."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.2), dpi=110)
    axes = figure.subplots()
    for i, (label, series) in enumerate(curves.items()):
        train = sorted(series.get("loss", ()))
        valid = sorted(series.get("eval_loss", ()))
        if train:
            axes.plot([s for s, _ in train], [v for _, v in train], color=color(i), linewidth=1.6,
                      label=f"{label} training")
        if valid:
            axes.plot([s for s, _ in valid], [v for _, v in valid], color=color(i), linewidth=1.2, linestyle="--",
                      marker="o", markersize=3.5, label=f"{label} validation")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.set_title("Loss: training (solid) and validation (dashed)")
    axes.grid(alpha=0.3)
    if axes.has_data():
        axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    return _save(figure, path)


def metric_bars(path: Path, metrics: Sequence[str], values: Mapping[str, Mapping[str, float]],
                baselines: Mapping[str, float] | None = None) -> Path:
    """One panel per metric, one bar per run (values: run label -> metric -> value); a metric's baseline, when
    known, is a dashed line across its panel."""
    from matplotlib.figure import Figure

    baselines = baselines or {}
    columns = min(len(metrics), 4) or 1
    rows = math.ceil(len(metrics) / columns) or 1
    labels = list(values)
    figure = Figure(figsize=(max(4.0, 2.2 + 0.55 * len(labels)) * columns / 1.4 + 1.0, 3.3 * rows), dpi=110)
    grid = figure.subplots(rows, columns, squeeze=False)
    for k, metric in enumerate(metrics):
        axes = grid[k // columns][k % columns]
        heights = [values[label].get(metric, math.nan) for label in labels]
        bars = axes.bar(range(len(labels)), heights, 0.7, color=[color(i) for i in range(len(labels))])
        axes.bar_label(bars, labels=[_fmt(h) for h in heights], padding=2, fontsize=8)
        base = baselines.get(metric)
        if base is not None and math.isfinite(base):
            axes.axhline(base, color="#444444", linestyle="--", linewidth=1.0, label=f"baseline {_fmt(base)}")
            axes.legend(fontsize=7, loc="best", framealpha=0.85)
        log = _scale(axes, [h for h in heights if math.isfinite(h)] + ([base] if base is not None else []))
        axes.set_title(metric.removeprefix("eval/") + (" (log scale)" if log else ""), fontsize=10)
        axes.set_xticks(range(len(labels)), [_short(label) for label in labels], fontsize=7, rotation=15)
        axes.margins(y=0.18)
    for k in range(len(metrics), rows * columns):
        grid[k // columns][k % columns].set_visible(False)
    figure.suptitle("Evaluation metrics", fontsize=11)
    figure.tight_layout()
    return _save(figure, path)


def _scale(axes: object, values: list[float]) -> bool:
    """Bars start at 0; values (with the baseline) that span more than 30x get a log axis, so a small
    perplexity stays visible next to a baseline in the thousands. True when the axis is logarithmic."""
    if not values or min(values) < 0:
        return False
    if min(values) > 0 and min(values) * 30 < max(values):
        axes.set_yscale("log")  # type: ignore[attr-defined]
        return True
    # room above the tallest bar for its value label
    axes.set_ylim(0, max(values) * 1.18 if max(values) > 0 else 1.0)  # type: ignore[attr-defined]
    return False


def _save(figure: object, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")  # type: ignore[attr-defined]
    return path


def _short(label: str, width: int = 24) -> str:
    return label if len(label) <= width else label[:width - 1] + "…"


def _fmt(value: float) -> str:
    if value is None or not math.isfinite(value):
        return ""
    return f"{value:.4g}"
