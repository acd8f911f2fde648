"""Assemble the evaluation report from the task results (metrics with intervals, A/B comparisons, gates,
benchmark) and write it to `<run_dir>/eval/`: report.json, report.md and one PNG per task.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from forge.atomic import write_text
from forge.evaluate.bootstrap import CONFIDENCE, MIN_UNITS, NOT_COMPARABLE, cluster, interval, paired_bootstrap
from forge.evaluate.catalog import METRICS
from forge.evaluate.gates import all_passed, check_gates
from forge.evaluate.generation import latency_summary
from forge.evaluate.results import TaskResult

REPORT_VERSION = 1
BENCHMARK_METRICS = ("latency_p50_s", "latency_p99_s", "tokens_per_second")
NO_INTERVAL = "no interval (no per-example scores)"
PLOT_TITLES = {"perplexity": ("Perplexity (lower is better)", "perplexity"),
               "gene_recognition": ("Gene-name recognition", ""), "summarization": ("Summarization (ROUGE F)", ""),
               "question_answering": ("Question answering", ""),
               "general": ("General ability (lm-evaluation-harness)", "")}


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
        if tuned.skipped:
            continue
        baseline = baseline if baseline is not None and not baseline.skipped else None
        # the general task: each harness task on its own, paired with the baseline's same task
        parts = list(tuned.parts.items()) if tuned.parts else [(task, tuned)]
        for key, part in parts:
            other = (baseline.parts.get(key) if tuned.parts else baseline) if baseline is not None else None
            if part.units is not None:
                n_units = cluster(part.units, part.groups).shape[0]
                tasks[task]["units"] = n_units
                if 2 <= n_units < MIN_UNITS:
                    kind = unit if part is tuned else "document"
                    notes.append(f"{key}: a small sample ({n_units} {kind}s, fewer than {MIN_UNITS}): its intervals "
                                 "are rough and no comparison is called significant")
            elif not tuned.parts:
                continue  # a task without units has nothing to report
            _add_metrics(task, part, other, metrics, comparisons, samples, seed, refused)
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


def _add_metrics(task: str, tuned: TaskResult, baseline: TaskResult | None, metrics: dict[str, Any],
                 comparisons: dict[str, Any], samples: int, seed: int, refused: Mapping[str, str]) -> None:
    """The metrics of one result (a task, or one harness task of `general`): with bootstrap intervals (resampling
    the result's units: papers, or documents) and the paired comparison where there are per-example units, the
    point values (and their difference) where not; a metric in `refused` gets no comparison, with the reason."""
    for name in dict.fromkeys([*tuned.statistics, *tuned.metrics]):
        higher = tuned.higher_is_better.get(name, METRICS[name].higher_is_better if name in METRICS else True)
        statistic = tuned.statistics.get(name)
        units = tuned.units if statistic is not None else None
        entry: dict[str, Any] = {"task": task, "higher_is_better": higher, "tuned": _clean(tuned.metrics.get(name)),
                                 "tuned_ci": _pair(interval(units, statistic, samples=samples, seed=seed,
                                                            groups=tuned.groups)) if units is not None else None}
        if units is not None:
            entry["units"] = cluster(units, tuned.groups).shape[0]
        if baseline is not None and (name in baseline.metrics or baseline.units is not None):
            entry["baseline"] = _clean(baseline.metrics.get(name))
            paired = units is not None and name in baseline.statistics and baseline.units is not None and \
                baseline.units.shape == units.shape
            entry["baseline_ci"] = _pair(interval(baseline.units, statistic, samples=samples, seed=seed,
                                                  groups=baseline.groups)) if paired else None
            if name in refused:
                entry["not_comparable"] = refused[name]
                comparisons[name] = {"metric": name, "verdict": NOT_COMPARABLE, "reason": refused[name]}
            elif paired:
                comparison = paired_bootstrap(units, baseline.units, statistic, metric=name, higher_is_better=higher,
                                              samples=samples, seed=seed, groups=tuned.groups)
                comparisons[name] = {k: _clean(v) for k, v in comparison.to_dict().items()}
            elif entry["tuned"] is not None and entry["baseline"] is not None:
                comparisons[name] = _point_comparison(name, entry["tuned"], entry["baseline"], higher)
        metrics[name] = entry


def _point_comparison(name: str, tuned: float, baseline: float, higher: bool) -> dict[str, Any]:
    """The difference of two point values without per-example scores to resample: no interval, no verdict."""
    return {"metric": name, "tuned": tuned, "baseline": baseline, "difference": tuned - baseline,
            "ci_low": None, "ci_high": None, "relative_change": (tuned - baseline) / baseline if baseline else None,
            "higher_is_better": higher, "verdict": NO_INTERVAL, "examples": None, "samples": 0}


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
        names = _plotted_general(report, names) if task == "general" else names
        if not names:
            continue
        # a general metric's label: its task over its metric (general/arc_easy/acc -> arc_easy / acc)
        labels = {n: n.removeprefix("general/").replace("/", "\n", 1) if task == "general" else n for n in names}
        series: dict[str, dict[str, tuple[float, float, float]]] = {"fine-tuned": {}}
        if report.get("has_baseline"):
            series[report.get("baseline_label") or "baseline"] = {}
        for name in names:
            entry = report["metrics"][name]
            series["fine-tuned"][labels[name]] = _bar(entry.get("tuned"), entry.get("tuned_ci"))
            if len(series) > 1 and entry.get("baseline") is not None:
                series[list(series)[1]][labels[name]] = _bar(entry.get("baseline"), entry.get("baseline_ci"))
        file = f"{task}.png"
        values = [v for name in names for v in (report["metrics"][name].get("tuned"),
                                                 report["metrics"][name].get("baseline")) if v is not None]
        bar_chart(folder / file, title, [labels[n] for n in names], series, ylabel,
                  unit_interval=task != "perplexity" and all(0.0 <= v <= 1.0 for v in values))
        written.append(file)
    return written


def _plotted_general(report: Mapping[str, Any], names: list[str]) -> list[str]:
    """The general metrics of the tasks the recipe lists (a group's, not each of its tasks': mmlu has 57)."""
    from forge.evaluate.general import safe_name, split_metric

    listed = ((report.get("tasks", {}).get("general", {}).get("tuned") or {}).get("details") or {}).get("listed")
    if not listed:
        return names
    keep = {safe_name(t) for t in listed}
    return [n for n in names if (split_metric(n) or ("", ""))[0] in keep]


def _task_entry(tuned: TaskResult, baseline: TaskResult | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"tuned": _result(tuned)}
    if baseline is not None:
        entry["baseline"] = _result(baseline)
    return entry


def _result(result: TaskResult) -> dict[str, Any]:
    if result.skipped:
        return {"model": result.model, "skipped": result.skipped}
    entry = {"model": result.model, "metrics": {k: _clean(v) for k, v in result.metrics.items()},
             "details": {k: _clean(v) for k, v in result.details.items()}, "samples": result.samples}
    if result.parts:
        entry["parts"] = {name: _result(part) for name, part in result.parts.items()}
    return entry


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
