"""`forge runs compare RUN RUN ...`: the recipe values that differ between runs, their metrics side by side, and
two figures (loss curves overlaid, evaluation metrics as bars), written with a Markdown summary to a folder
and logged to every compared run under `comparisons/<ids>/`.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge.track.errors import TrackingError
from forge.track.plots import loss_curves, metric_bars
from forge.track.store import calling, find_run, open_client, resolve_store
from forge.track.tables import markdown_table, number, text_table

CURVES = ("loss", "eval_loss")
# run tags worth comparing: where the code, libraries and machine differed
ENVIRONMENT_TAGS = ("forge.recipe.chain", "forge.recipe.overrides", "forge.git.commit", "forge.git.dirty",
                    "forge.device")
SKIPPED_METRICS = ("epoch",)
SPEED_WORDS = ("latency", "per_second", "seconds")  # bars of speed go after bars of quality


@dataclass
class Comparison:
    runs: list[Any]
    labels: list[str]
    recipe: list[list[str]] = field(default_factory=list)  # [key, value per run], only keys that differ
    metrics: list[list[str]] = field(default_factory=list)  # [metric, value per run]
    environment: list[list[str]] = field(default_factory=list)  # [tag, value per run], only tags that differ
    curves: dict[str, dict[str, list[tuple[int, float]]]] = field(default_factory=dict)
    bar_metrics: list[str] = field(default_factory=list)
    bar_values: dict[str, dict[str, float]] = field(default_factory=dict)
    baselines: dict[str, float] = field(default_factory=dict)


def compare_command(uri: str | None, refs: list[str], out: str | None = None, log: bool = True,
                    as_json: bool = False) -> int:
    store = resolve_store(uri)
    client = open_client(store)
    with calling("read the runs", store):
        runs = _distinct([find_run(client, ref, store) for ref in refs])
        if len(runs) < 2:
            raise TrackingError("compare needs two or more different runs", "forge runs list shows the run ids")
        comparison = compare(client, runs)
    folder = Path(out) if out else default_folder(store, runs)
    files = write_comparison(comparison, folder)
    logged = ""
    if log:
        with calling("log the comparison", store):
            for run in runs:
                client.log_artifacts(run.info.run_id, str(folder), artifact_path=f"comparisons/{folder.name}")
        logged = f"; logged to each run under comparisons/{folder.name}/"
    if as_json:
        print(json.dumps(comparison_json(comparison, files), indent=2))
    else:
        print(format_comparison(comparison))
        print(f"\nwrote {', '.join(str(f) for f in files)}{logged}")
    return 0


def compare(client: Any, runs: list[Any]) -> Comparison:
    """Everything the tables and plots need, read from MLflow."""
    labels = [label(run) for run in runs]
    result = Comparison(runs, labels)
    params = [run.data.params for run in runs]
    for key in sorted(set().union(*params)):
        values = [p.get(key, "-") for p in params]
        if len(set(values)) > 1:
            result.recipe.append([key, *values])
    for key in ENVIRONMENT_TAGS + tuple(sorted({k for r in runs for k in r.data.tags if k.startswith("forge.version.")})):
        values = [run.data.tags.get(key, "-") for run in runs]
        if len(set(values)) > 1:
            result.environment.append([key.removeprefix("forge."), *values])
    for run, name in zip(runs, labels):
        result.curves[name] = {key: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]
                               for key in CURVES}
    best = [min((v for _, v in result.curves[name]["eval_loss"]), default=None) for name in labels]
    for key in _metric_order({k for run in runs for k in run.data.metrics}):
        values = [number(run.data.metrics.get(key)) for run in runs]
        if key.endswith("_baseline") and len(set(values)) == 1:
            continue  # the same baseline for every run says nothing about the runs
        result.metrics.append([key, *values])
        if key == "eval_loss":
            result.metrics.append(["eval_loss (best)", *[number(b) for b in best]])
    _bars(result)
    return result


def label(run: Any) -> str:
    return f"{run.info.run_name} ({run.info.run_id[:8]})"


def default_folder(store: str, runs: list[Any]) -> Path:
    """Beside the local store (`runs/comparisons/...` by default), else in the working directory."""
    name = "-vs-".join(run.info.run_id[:8] for run in runs)
    if store.startswith("sqlite:///"):
        return Path(store.removeprefix("sqlite:///")).parent / "comparisons" / name
    return Path("comparisons") / name


def write_comparison(c: Comparison, folder: Path) -> list[Path]:
    """loss_curves.png, eval_metrics.png (when the runs have evaluation metrics) and comparison.md."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [loss_curves(folder / "loss_curves.png", c.curves)]
    if c.bar_metrics:
        files.append(metric_bars(folder / "eval_metrics.png", c.bar_metrics, c.bar_values, c.baselines))
    (folder / "comparison.md").write_text(format_markdown(c, [f.name for f in files]), encoding="utf-8")
    return [*files, folder / "comparison.md"]


def format_comparison(c: Comparison) -> str:
    sections = [text_table(["run", "id", "status", "experiment id"],
                           [[r.info.run_name, r.info.run_id, r.info.status, r.info.experiment_id] for r in c.runs])]
    for title, rows, empty in _sections(c):
        sections.append(f"{title}\n" + (text_table(["", *c.labels], rows, max_width=60) if rows else empty))
    return "\n\n".join(sections)


def format_markdown(c: Comparison, images: list[str]) -> str:
    lines = [f"# Comparison of {len(c.runs)} runs", "",
             markdown_table(["run", "id", "status"], [[r.info.run_name, f"`{r.info.run_id}`", r.info.status]
                                                     for r in c.runs])]
    for title, rows, empty in _sections(c):
        lines += ["", f"## {title[0].upper()}{title[1:]}", "", markdown_table(["", *c.labels], rows) if rows else empty]
    lines += [""] + [f"![{name}]({name})" for name in images]
    return "\n".join(lines) + "\n"


def comparison_json(c: Comparison, files: list[Path]) -> dict[str, Any]:
    def table(rows: list[list[str]]) -> dict[str, dict[str, str]]:
        return {row[0]: dict(zip(c.labels, row[1:])) for row in rows}

    return {"runs": [{"run_id": r.info.run_id, "name": r.info.run_name, "label": lab} for r, lab in
                     zip(c.runs, c.labels)],
            "recipe": table(c.recipe), "metrics": table(c.metrics), "environment": table(c.environment),
            "files": [str(f) for f in files]}


def _sections(c: Comparison) -> list[tuple[str, list[list[str]], str]]:
    return [("recipe values that differ", c.recipe, "the recipes are the same"),
            ("metrics (last value)", c.metrics, "no metrics"),
            ("environment that differs", c.environment, "same code, libraries and device")]


def _metric_order(keys: set[str]) -> list[str]:
    """forge eval's results first, then validation loss and perplexity, training loss, the rest."""
    first = ("eval_loss", "eval_perplexity", "loss")

    def rank(key: str) -> tuple[int, str]:
        if key.startswith("eval/"):
            return 0, key
        if key in first:
            return 1, str(first.index(key))
        return (2, key) if key.startswith("eval_") else (3, key)

    return sorted((k for k in keys if k not in SKIPPED_METRICS), key=rank)


def _bars(c: Comparison) -> None:
    """forge eval's metrics when the runs have them, else the final validation loss and perplexity."""
    metrics = {k for r in c.runs for k in r.data.metrics if k.startswith("eval/")
               and not k.endswith("_baseline") and k != "eval/gates_passed"}
    if not metrics:
        metrics = {k for r in c.runs for k in r.data.metrics if k in ("eval_loss", "eval_perplexity")}
    c.bar_metrics = sorted(metrics, key=lambda k: (any(w in k for w in SPEED_WORDS), k))
    c.bar_values = {name: {k: run.data.metrics.get(k, math.nan) for k in c.bar_metrics}
                    for run, name in zip(c.runs, c.labels)}
    for k in c.bar_metrics:
        bases = {r.data.metrics[f"{k}_baseline"] for r in c.runs if f"{k}_baseline" in r.data.metrics}
        if len(bases) == 1:  # one baseline for all runs (a timing measured per run is no common line)
            c.baselines[k] = bases.pop()


def _distinct(runs: list[Any]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for run in runs:
        if run.info.run_id not in seen:
            seen.add(run.info.run_id)
            out.append(run)
    return out
