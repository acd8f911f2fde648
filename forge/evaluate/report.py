"""Assemble the evaluation report from the task results (metrics with intervals, A/B comparisons, gates,
benchmark) and write it to `<run_dir>/eval/`: report.json, report.md and one PNG per task.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from forge.evaluate.bootstrap import CONFIDENCE, MIN_UNITS, NOT_COMPARABLE, cluster, interval, paired_bootstrap
from forge.file_modes import as_umask_allows
from forge.evaluate.catalog import METRICS
from forge.evaluate.gates import all_passed, check_gates
from forge.evaluate.generation import latency_summary
from forge.evaluate.tasks import TaskResult

REPORT_VERSION = 1
BENCHMARK_METRICS = ("latency_p50_s", "latency_p99_s", "tokens_per_second")
PLOT_TITLES = {"perplexity": ("Perplexity (lower is better)", "perplexity"),
               "gene_recognition": ("Gene-name recognition", ""), "summarization": ("Summarization (ROUGE F)", ""),
               "question_answering": ("Question answering", "")}


def build_report(*, results: Mapping[str, Mapping[str, TaskResult | None]], gates: Sequence[Any],
                 samples: int, seed: int, info: Mapping[str, Any], notes: Sequence[str] = (), unit: str = "paper",
                 not_comparable: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The report dict: results is {task: {"tuned": TaskResult, "baseline": TaskResult | None}}. unit names
    what one resampled unit is (paper, sentence); not_comparable maps a metric to why its values cannot be
    compared between the two models (it then gets no difference, verdict or relative gate)."""
    metrics: dict[str, dict[str, Any]] = {}
    comparisons: dict[str, dict[str, Any]] = {}
    tasks: dict[str, dict[str, Any]] = {}
    notes = list(notes)
    refused = dict(not_comparable or {})
    has_baseline = any(r.get("baseline") is not None for r in results.values())
    for task, pair in results.items():
        tuned, baseline = pair["tuned"], pair.get("baseline")
        assert tuned is not None
        tasks[task] = _task_entry(tuned, baseline)
        if tuned.skipped or tuned.units is None:
            continue
        n_units = cluster(tuned.units, tuned.groups).shape[0]
        tasks[task]["units"] = n_units
        if 2 <= n_units < MIN_UNITS:
            notes.append(f"{task}: a small sample ({n_units} {unit}s, fewer than {MIN_UNITS}): its intervals are "
                         "rough and no comparison is called significant")
        for name, statistic in tuned.statistics.items():
            entry: dict[str, Any] = {"task": task, "higher_is_better": METRICS[name].higher_is_better,
                                     "tuned": _clean(tuned.metrics.get(name)), "units": n_units,
                                     "tuned_ci": _pair(interval(tuned.units, statistic, samples=samples, seed=seed,
                                                                groups=tuned.groups))}
            if baseline is not None and not baseline.skipped and baseline.units is not None \
                    and name in baseline.statistics:
                entry["baseline"] = _clean(baseline.metrics.get(name))
                entry["baseline_ci"] = _pair(interval(baseline.units, statistic, samples=samples, seed=seed,
                                                      groups=baseline.groups))
                if name in refused:
                    entry["not_comparable"] = refused[name]
                    comparisons[name] = {"metric": name, "verdict": NOT_COMPARABLE, "reason": refused[name]}
                else:
                    comparison = paired_bootstrap(tuned.units, baseline.units, statistic, metric=name,
                                                  higher_is_better=METRICS[name].higher_is_better, samples=samples,
                                                  seed=seed, groups=tuned.groups)
                    comparisons[name] = {k: _clean(v) for k, v in comparison.to_dict().items()}
            metrics[name] = entry
    benchmark = _benchmark(results)
    for name in BENCHMARK_METRICS:
        if name in benchmark.get("tuned", {}):
            metrics[name] = {"task": "benchmark", "higher_is_better": METRICS[name].higher_is_better,
                             "tuned": benchmark["tuned"][name],
                             **({"baseline": benchmark["baseline"][name]} if name in benchmark.get("baseline", {})
                                else {})}
    outcomes = [o.to_dict() for o in check_gates(gates, metrics)]
    return {
        "version": REPORT_VERSION,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **dict(info),
        "has_baseline": has_baseline,
        "bootstrap": {"samples": samples, "seed": seed, "confidence": CONFIDENCE, "unit": unit,
                      "min_units": MIN_UNITS},
        "metrics": metrics,
        "comparisons": comparisons,
        "tasks": tasks,
        "benchmark": benchmark,
        "gates": outcomes,
        "gates_passed": all_passed(outcomes),
        "notes": notes,
    }


def write_report(report: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Draw the plots, then write report.json and report.md into folder; returns the report with plot paths."""
    from forge.evaluate.markdown import render_markdown

    folder.mkdir(parents=True, exist_ok=True)
    report["plots"] = draw_plots(report, folder)
    write_text(folder / "report.json", json.dumps(report, indent=2, allow_nan=False, default=str) + "\n")
    write_text(folder / "report.md", render_markdown(report))
    return report


def draw_plots(report: Mapping[str, Any], folder: Path) -> list[str]:
    """One bar chart per task that produced metrics; file names relative to folder."""
    from forge.evaluate.plots import bar_chart

    written = []
    for task, (title, ylabel) in PLOT_TITLES.items():
        names = [m for m, e in report["metrics"].items() if e["task"] == task and e.get("tuned") is not None]
        if task == "perplexity":  # one scale per chart: bits per byte only when perplexities cannot be compared
            refused = report["metrics"].get("perplexity", {}).get("not_comparable")
            names = [m for m in names if m == ("bits_per_byte" if refused else "perplexity")]
        if not names:
            continue
        series: dict[str, dict[str, tuple[float, float, float]]] = {"fine-tuned": {}}
        if report.get("has_baseline"):
            series[report.get("baseline_label") or "baseline"] = {}
        for name in names:
            entry = report["metrics"][name]
            series["fine-tuned"][name] = _bar(entry.get("tuned"), entry.get("tuned_ci"))
            if len(series) > 1 and entry.get("baseline") is not None:
                series[list(series)[1]][name] = _bar(entry.get("baseline"), entry.get("baseline_ci"))
        file = f"{task}.png"
        bar_chart(folder / file, title, names, series, ylabel, unit_interval=task != "perplexity")
        written.append(file)
    return written


def write_text(path: Path, text: str) -> None:
    """Replace path with text atomically (a temporary file renamed over it), so a reader never sees half."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        as_umask_allows(tmp)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _task_entry(tuned: TaskResult, baseline: TaskResult | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"tuned": _result(tuned)}
    if baseline is not None:
        entry["baseline"] = _result(baseline)
    return entry


def _result(result: TaskResult) -> dict[str, Any]:
    if result.skipped:
        return {"model": result.model, "skipped": result.skipped}
    return {"model": result.model, "metrics": {k: _clean(v) for k, v in result.metrics.items()},
            "details": {k: _clean(v) for k, v in result.details.items()}, "samples": result.samples}


def _benchmark(results: Mapping[str, Mapping[str, TaskResult | None]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for side in ("tuned", "baseline"):
        generations = [g for pair in results.values() if pair.get(side) is not None
                       for g in pair[side].generations]  # type: ignore[union-attr]
        if generations:
            out[side] = latency_summary(generations)
    return out


def _bar(value: Any, ci: Any) -> tuple[float, float, float]:
    v = float(value) if value is not None else math.nan
    low, high = (ci if ci and None not in ci else (v, v))
    return v, float(low), float(high)


def _pair(values: tuple[float, float]) -> list[float | None]:
    return [_clean(v) for v in values]


def _clean(value: Any) -> Any:
    """JSON has no nan or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
