"""The readable report (report.md): the gates first, then one table of every metric with its interval and
the A/B verdict, the figures, sample outputs per task, the generation benchmark and notes.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from forge.evaluate.bootstrap import CONFIDENCE, confidence_label
from forge.evaluate.gates import gate_label

TASK_TITLES = {"perplexity": "Perplexity", "gene_recognition": "Gene-name recognition",
               "summarization": "Summarization", "question_answering": "Question answering",
               "general": "General ability (lm-evaluation-harness)"}


def render_markdown(report: Mapping[str, Any]) -> str:
    """report.md for a report dict built by forge.evaluate.report."""
    baseline = report.get("baseline_label") or "baseline"
    level = confidence_label(report.get("bootstrap", {}).get("confidence", CONFIDENCE))
    unit = report.get("bootstrap", {}).get("unit", "paper")
    lines = [f"# Evaluation of {report.get('run_name', 'run')}", ""]
    lines += [f"- run directory: `{report.get('run_dir')}`",
              f"- fine-tuned model: `{report.get('model_source')}`",
              f"- baseline: {baseline if report.get('has_baseline') else 'none'}",
              f"- data: {report.get('data', {}).get('source')} "
              f"({_counts(report.get('data', {}).get('examples', {}))})",
              f"- device: {report.get('device', 'unknown')}",
              f"- bootstrap: {report['bootstrap']['samples']} paired resamples of whole {unit}s, seed "
              f"{report['bootstrap']['seed']}, {level} percentile intervals",
              f"- evaluated at {report.get('created_at')} in {report.get('wall_seconds', 0):.1f} s", ""]
    lines += _gates(report)
    lines += _metrics_table(report, baseline, level)
    for task, entry in report.get("tasks", {}).items():
        lines += _task_section(task, entry, report)
    lines += _benchmark(report, baseline)
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {note}" for note in report["notes"]] + [""]
    return "\n".join(lines).rstrip() + "\n"


def _gates(report: Mapping[str, Any]) -> list[str]:
    gates = report.get("gates") or []
    if not gates:
        return ["## Gates", "", "No quality gates are set (evaluation.gates).", ""]
    verdict = "all passed" if report.get("gates_passed") else "FAILED"
    lines = [f"## Gates: {verdict}", "", "| gate | result | detail |", "| --- | --- | --- |"]
    for g in gates:
        lines.append(f"| `{gate_label(g)}` | {'pass' if g['passed'] else '**FAIL**'} | "
                     f"{_escape(g['reason'])} |")
    return lines + [""]


def _metrics_table(report: Mapping[str, Any], baseline: str, level: str) -> list[str]:
    metrics = {k: v for k, v in report.get("metrics", {}).items() if v.get("task") != "benchmark"}
    if not metrics:
        return ["## Results", "", "No task produced metrics.", ""]
    comparisons = report.get("comparisons", {})
    if not report.get("has_baseline"):
        lines = ["## Results", "", f"| metric | fine-tuned [{level} CI] |", "| --- | --- |"]
        lines += [f"| {name} | {_with_ci(e.get('tuned'), e.get('tuned_ci'))} |" for name, e in metrics.items()]
        return lines + [""]
    lines = ["## Results", "", f"| metric | fine-tuned [{level} CI] | {baseline} [{level} CI] | difference "
             f"[{level} CI] | verdict |", "| --- | --- | --- | --- | --- |"]
    for name, e in metrics.items():
        c = comparisons.get(name, {})
        arrow = "lower is better" if not e.get("higher_is_better") else "higher is better"
        difference = _with_ci(c.get("difference"), [c.get("ci_low"), c.get("ci_high")]) if c else "n/a"
        if c.get("relative_change") is not None:
            difference += f" ({c['relative_change']:+.1%})"
        verdict = c.get("verdict", "n/a") + (f" ({c['reason']})" if c.get("reason") else "")
        lines.append(f"| {name} ({arrow}) | {_with_ci(e.get('tuned'), e.get('tuned_ci'))} | "
                     f"{_with_ci(e.get('baseline'), e.get('baseline_ci'))} | {difference} | {_escape(verdict)} |")
    return lines + [""]


def _task_section(task: str, entry: Mapping[str, Any], report: Mapping[str, Any]) -> list[str]:
    lines = [f"## {TASK_TITLES.get(task, task)}", ""]
    tuned = entry.get("tuned", {})
    if tuned.get("skipped"):
        return lines + [f"Skipped: {tuned['skipped']}.", ""]
    plot = f"{task}.png"
    if plot in (report.get("plots") or []):
        lines += [f"![{TASK_TITLES.get(task, task)}]({plot})", ""]
    details = tuned.get("details", {})
    if details:
        lines += ["Details (fine-tuned): " + ", ".join(f"{k} {_num(v)}" for k, v in details.items()), ""]
    if tuned.get("parts"):
        return lines + _parts(entry)
    for side in ("tuned", "baseline"):
        samples = entry.get(side, {}).get("samples") or []
        if samples:
            lines += [f"Sample outputs ({entry[side]['model']}):", ""]
            lines += [f"- `{s.get('id')}`: " + "; ".join(f"{k}: {_short(v)}" for k, v in s.items() if k != "id")
                      for s in samples]
            lines.append("")
    return lines


def _parts(entry: Mapping[str, Any]) -> list[str]:
    """The general task's harness tasks: one line each (documents, shots, version, source), then its samples."""
    lines = []
    for name, part in entry["tuned"]["parts"].items():
        lines.append(f"- `{name}`: " + ", ".join(f"{k} {_num(v)}" for k, v in part.get("details", {}).items()
                                                  if v is not None))
    lines.append("")
    for side in ("tuned", "baseline"):
        for name, part in (entry.get(side) or {}).get("parts", {}).items():
            if part.get("samples"):
                lines += [f"Sample outputs of `{name}` ({part['model']}):", ""]
                lines += [f"- `{s.get('id')}`: " + "; ".join(f"{k}: {_short(v)}" for k, v in s.items() if k != "id")
                          for s in part["samples"]]
                lines.append("")
    return lines


def _benchmark(report: Mapping[str, Any], baseline: str) -> list[str]:
    bench = report.get("benchmark") or {}
    if not bench:
        return []
    lines = ["## Generation benchmark", "", "One request at a time on this machine; tokens/s counts generated "
             "tokens over generation time.", "", "| model | requests | p50 latency (s) | p99 latency (s) | "
             "tokens/s |", "| --- | --- | --- | --- | --- |"]
    for side, label in (("tuned", "fine-tuned"), ("baseline", baseline)):
        b = bench.get(side)
        if b and b.get("requests"):
            lines.append(f"| {label} | {b['requests']} | {b['latency_p50_s']:.3f} | {b['latency_p99_s']:.3f} | "
                         f"{b['tokens_per_second']:.1f} |")
    return lines + [""]


def _with_ci(value: Any, ci: Any) -> str:
    if value is None:
        return "n/a"
    text = _num(value)
    if ci and all(v is not None for v in ci):
        text += f" [{_num(ci[0])}, {_num(ci[1])}]"
    return text


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _escape(str(value))
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}"


def _short(value: Any, limit: int = 120) -> str:
    text = ", ".join(map(str, value)) if isinstance(value, list) else _num(value) if isinstance(value, float) \
        else str(value)
    text = " ".join(text.split())
    return _escape(text[:limit] + ("..." if len(text) > limit else ""))


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no examples"
