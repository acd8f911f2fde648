"""`forge eval`, executed: evaluate a finished run (its directory, or the recipe that names it) on the recipe's
tasks, against its baseline, and write `<run_dir>/eval/` (report.json, report.md, plots); then log it to the
run's MLflow run. `eval_command` is the verb (and the end of `forge run`): exit 0 when every gate passes,
1 when one fails; bad input raises a ForgeError (exit 2 in the CLI).

The run's recorded evaluation is the one its recipe defines. An ad-hoc evaluation (`--compare` with another
baseline, or key=value overrides such as other gates) writes its own folder, `eval/compare-NAME/` or
`eval/adhoc-HASH/`, and logs nothing to MLflow, so it never replaces the recorded report or the run's
`eval/*` metrics that `forge runs compare` reads.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import re
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from forge.evaluate.errors import EvaluationError
from forge.evaluate.gates import gate_label
from forge.run_target import resolve_run_target

EXIT_OK, EXIT_GATE_FAILED = 0, 1
NO_BASELINE = ("none", "null", "")


def resolve_target(target: str | Path, overrides: Sequence[str] = ()) -> tuple[Any, Path]:
    """(resolved recipe, run directory) for a run directory (its saved recipe.yaml) or a recipe file."""
    return resolve_run_target(target, overrides, EvaluationError)


def evaluate_run(run_dir: Path | str, compare: str | None = None, progress: bool = True, *,
                 overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Evaluate a run (directory or recipe path) and return the report (also in <run_dir>/eval/report.json).

    compare: the baseline (base, a run directory or an adapter folder; "none" for no baseline); None takes
    the recipe's evaluation.compare_with. overrides: key=value recipe overrides (e.g. evaluation.max_examples=5).
    """
    started = time.time()
    resolved, run_dir = resolve_target(run_dir, overrides)
    recipe = resolved.recipe
    if recipe.model.task == "token_classification":  # mentions scored as the NER literature does
        from forge.evaluate.tagger_eval import evaluate_tagger

        return evaluate_tagger(resolved, run_dir, progress, compare=compare)
    from forge.evaluate.report import build_report
    from forge.plan import compile_plan

    ev = recipe.evaluation
    baseline, folder = _baseline_and_folder(ev, run_dir, compare, overrides)
    plan = compile_plan(recipe)
    general = _load_general_tasks(ev, run_dir, progress)  # before any model: a missing dataset stops at once
    pair, data = _load_models_and_data(recipe, plan, run_dir, baseline, progress)
    settings = _task_settings(recipe, pair, general, progress)
    gene_notes = _gene_notes(data, settings, pair) if "gene_recognition" in ev.tasks else []
    results, threads = _run_tasks(ev.tasks, data, pair, settings)
    info = _report_info(recipe, run_dir, folder, baseline, pair, data, settings, overrides, threads)
    report = build_report(results=results, gates=ev.gates, samples=ev.bootstrap_samples, seed=recipe.run.seed,
                          info=info, notes=_notes(recipe, pair, data, gene_notes, results, general),
                          unit=data.unit, not_comparable=_not_comparable(pair))
    report["wall_seconds"] = round(time.time() - started, 2)
    return _write_and_track(report, run_dir, recipe, folder)


def _baseline_and_folder(ev: Any, run_dir: Path, compare: str | None,
                         overrides: Sequence[str]) -> tuple[str | None, Path]:
    """The baseline to compare with, and the report's folder: eval/ for the recipe's own evaluation, a folder
    of its own for one with another baseline or overrides."""
    recorded = _normal_baseline(ev.compare_with)
    baseline = recorded if compare is None else _normal_baseline(compare)
    other = (baseline or "none") if baseline != recorded else None  # a baseline other than the recipe's
    folder = run_dir / "eval" / adhoc_name(other, overrides) if other or overrides else run_dir / "eval"
    return baseline, folder


def _load_general_tasks(ev: Any, run_dir: Path, progress: bool) -> Any:
    """The harness's tasks with their data, when the recipe asks for the general task; else None."""
    if "general" not in ev.tasks:
        return None
    from forge.evaluate.harness import load_harness_tasks

    if progress:
        print(f"forge eval {run_dir}: loading lm-evaluation-harness tasks", file=sys.stderr, flush=True)
    return load_harness_tasks(ev.general)


def _load_models_and_data(recipe: Any, plan: Any, run_dir: Path, baseline: str | None,
                          progress: bool) -> tuple[Any, Any]:
    """The fine-tuned model and its baseline, and the held-out examples of the domain tasks."""
    from transformers import set_seed

    from forge.evaluate.examples import EvalData, load_eval_data
    from forge.evaluate.models import load_models

    ev = recipe.evaluation
    set_seed(recipe.run.seed)
    if progress:  # progress goes to stderr: stdout holds the results (or the --json report)
        print(f"forge eval {run_dir}: loading models", file=sys.stderr, flush=True)
    pair = load_models(recipe, plan, run_dir, baseline)
    domain = [task for task in ev.tasks if task != "general"]  # the tasks on held-out papers
    data = load_eval_data(recipe, pair.tuned.tokenizer, progress=progress) if domain else \
        EvalData(source="lm-evaluation-harness tasks", documents=0)
    if domain and data.documents == 0:
        raise EvaluationError(f"there is nothing to evaluate on: {data.source} holds no papers",
                              f"set data.split.{ev.split} above 0, or evaluation.data to held-out papers")
    return pair, data


def _task_settings(recipe: Any, pair: Any, general: Any, progress: bool) -> Any:
    """What the tasks read of the recipe: the window, the decoding, whether prompts use the chat template."""
    from forge.evaluate.tasks import TaskSettings

    ev = recipe.evaluation
    return TaskSettings(window=_window(ev.window or recipe.training.max_seq_length, pair.tuned.model),
                        stride=ev.stride, max_new_tokens=ev.generation.max_new_tokens,
                        temperature=ev.generation.temperature, top_p=ev.generation.top_p,
                        chat=uses_chat_template(recipe.data.format, pair.tuned.tokenizer), progress=progress,
                        general=general)


def _run_tasks(tasks: Sequence[str], data: Any, pair: Any, settings: Any) -> tuple[dict[str, dict[str, Any]], int]:
    """Each task on the fine-tuned model and on the baseline; returns the results and the CPU threads used."""
    from forge.evaluate.tasks import run_task

    results: dict[str, dict[str, Any]] = {}
    with _cpu_threads(pair.tuned.model) as threads:
        if any(task not in ("perplexity", "general") for task in tasks):  # the first generation allocates; untimed
            for model in (pair.tuned, pair.baseline):
                if model is not None and model.kind == "causal_lm":
                    with model.use():
                        settings.prompter(model.tokenizer).warm_up(model.model)
        for task in tasks:
            results[task] = {"tuned": run_task(task, data, pair.tuned, settings),
                             "baseline": run_task(task, data, pair.baseline, settings) if pair.baseline else None}
    return results, threads


def _not_comparable(pair: Any) -> dict[str, str]:
    """Metrics that cannot be compared between the two models, with why."""
    if pair.baseline is not None and not same_tokenizer(pair.tuned.tokenizer, pair.baseline.tokenizer):
        return {"perplexity": ("the two models have different tokenizers, so their perplexities are per "
                               "different tokens; compare bits_per_byte")}
    return {}


def _notes(recipe: Any, pair: Any, data: Any, gene_notes: list[str], results: dict[str, dict[str, Any]],
           general: Any) -> list[str]:
    """The report's notes: what the models, the data and the gene passages said, the skipped tasks, and what a
    reader must know to read the gene and general scores."""
    ev = recipe.evaluation
    notes = pair.notes + data.notes + gene_notes + [
        f"{t}: skipped, {r['tuned'].skipped}" for t, r in results.items() if r["tuned"].skipped]
    if "gene_recognition" in ev.tasks and pair.tuned.kind == "causal_lm" and (
            recipe.data.format == "causal_lm" or "list_genes" not in recipe.data.templates):
        notes.append("gene_recognition: the model was not trained on the list_genes instruction (data.format "
                     f"{recipe.data.format}), so its gene F1 measures zero-shot listing; to teach it, train with "
                     "data.format: instruction and list_genes in data.templates")
    if general is not None and ev.general.limit:
        notes.append(f"general: at most {ev.general.limit} documents per harness task (evaluation.general.limit), "
                     "so its scores are not the harness's full-set numbers")
    return notes


def _report_info(recipe: Any, run_dir: Path, folder: Path, baseline: str | None, pair: Any, data: Any,
                 settings: Any, overrides: Sequence[str], threads: int) -> dict[str, Any]:
    """What was evaluated, on what, how and where: the report's header."""
    import torch

    ev = recipe.evaluation
    return {
        "run_name": recipe.run.name, "run_dir": str(run_dir), "model_source": pair.tuned.source,
        "base_model": recipe.model.name_or_path, "compare_with": baseline,
        "baseline_label": pair.baseline.label if pair.baseline else None, "tasks_requested": list(ev.tasks),
        "data": {"source": data.source, "documents": data.documents,
                 "examples": {t: n for t, n in data.counts().items() if t in ev.tasks}},
        "settings": {"window": settings.window, "stride": ev.stride, "generation": ev.generation.model_dump(),
                     "prompt": "chat template" if settings.chat else "plain"},
        "recorded": folder == run_dir / "eval", "report_dir": str(folder), "overrides": list(overrides),
        "device": f"cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else
                  f"cpu ({threads} thread{'s' if threads > 1 else ''})",
    }


def _write_and_track(report: dict[str, Any], run_dir: Path, recipe: Any, folder: Path) -> dict[str, Any]:
    """Write the report; the recipe's own evaluation is also logged to the run's MLflow run (an ad-hoc one is
    not, so it never replaces the recorded metrics)."""
    from forge.evaluate.report import write_report

    if folder != run_dir / "eval":
        report["tracking"] = {"status": "off", "reason": "an ad-hoc evaluation is not logged to the run"}
        write_report(report, folder)
        return report
    write_report(report, folder)
    report["tracking"] = _track(run_dir, recipe, report, folder)
    if report["tracking"]["status"] != "off":
        write_report(report, folder)  # keep the tracking outcome with the report
    return report


def eval_command(target: str | Path, compare: str | None = None, *, overrides: Sequence[str] = (),
                 progress: bool = True, as_json: bool = False) -> int:
    """`forge eval TARGET [--compare X]`: print the results; 0 when every gate passes, 1 when one fails.
    A problem with the input (a path, the recipe, the data) raises: a ForgeError or a RecipeError."""
    report = evaluate_run(Path(target), compare, progress, overrides=overrides)
    print(json.dumps(report, indent=2, default=str) if as_json else summary_text(report), flush=True)
    failed = [g for g in report["gates"] if not g["passed"]]
    for g in failed:
        print(f"forge: quality gate failed: {gate_label(g)}: {g['reason']}",
              file=sys.stderr)
    return EXIT_GATE_FAILED if failed else EXIT_OK


def _gene_notes(data: Any, settings: Any, pair: Any) -> list[str]:
    """Fit the gene-recognition passages to the window; the notes on what was cut and how gold was read."""
    from forge.evaluate.examples import gene_gold_note

    notes = _fit_gene_passages(data, settings, pair)
    gold_note = gene_gold_note(data.gene_recognition)  # of the cut passages
    return notes + ([gold_note] if gold_note else [])


def _fit_gene_passages(data: Any, settings: Any, pair: Any) -> list[str]:
    """Cut each gene-recognition passage once, with the fine-tuned model's tokenizer, to the prompt's window, and
    read its gold from that cut: both models answer the very same examples. Returns the notes on what was cut."""
    from forge.evaluate.examples import fit_gene_examples

    fit_notes: list[str] = []
    if pair.tuned.kind == "causal_lm" and data.gene_recognition:
        prompter = settings.prompter(pair.tuned.tokenizer)
        fitted, _ = fit_gene_examples(data.gene_recognition, lambda passage: prompter.fit("genes", passage))
        kept = [(before, after) for before, after in zip(data.gene_recognition, fitted) if after.passage.strip()]
        if len(kept) < len(fitted):  # a prompt without its passage asks nothing: its "none" would score perfect
            fit_notes.append(f"gene_recognition: left out {len(fitted) - len(kept)} examples: the instruction alone "
                             f"fills the {settings.window}-token window (less {settings.max_new_tokens} new tokens), "
                             "so no passage fits; raise evaluation.window")
        lost = sum(len(before.gold) - len(after.gold) for before, after in kept)
        data.gene_recognition = [after for _, after in kept]
        if lost:
            fit_notes.append(f"gene_recognition: {lost} gold genes fell outside the passage cut to fit the "
                             f"{settings.window}-token window and are not gold")
    return fit_notes


def summary_text(report: dict[str, Any]) -> str:
    """The lines `forge eval` prints: one per metric (with the A/B verdict), one per gate, the report path."""
    lines = [f"forge eval {report['run_dir']}: {', '.join(report['tasks_requested'])} on "
             f"{report['data']['source']}" + (f", against {report['baseline_label']}" if report["has_baseline"] else "")]
    for name, entry in report["metrics"].items():
        tuned = entry.get("tuned")
        text = f"  {name:<18} {_fmt(tuned)}"
        if entry.get("baseline") is not None:
            text += f"  (baseline {_fmt(entry['baseline'])}"
            comparison = report["comparisons"].get(name)
            if comparison and "difference" not in comparison:
                text += f", {comparison['verdict']}: {comparison.get('reason', '')}"
            elif comparison:
                text += f", difference {_fmt(comparison['difference'])} [{_fmt(comparison['ci_low'])}, " \
                        f"{_fmt(comparison['ci_high'])}]: {comparison['verdict']}"
            text += ")"
        lines.append(text)
    for gate in report["gates"]:
        lines.append(f"  {'PASS' if gate['passed'] else 'FAIL'} {gate_label(gate)}: {gate['reason']}")
    lines.append(f"  report: {Path(report.get('report_dir') or Path(report['run_dir']) / 'eval') / 'report.md'}")
    return "\n".join(lines)


def adhoc_name(baseline: str | None, overrides: Sequence[str]) -> str:
    """The folder of an ad-hoc evaluation: compare-NAME for another baseline (NAME its folder's name, or
    base / none), adhoc for overrides alone, with a short hash of the overrides when there are any."""
    name = "adhoc" if baseline is None else \
        "compare-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", Path(baseline).name).strip("-") or "baseline")
    if overrides:
        name += "-" + hashlib.sha256("\n".join(overrides).encode("utf-8")).hexdigest()[:8]
    return name


def uses_chat_template(data_format: str, tokenizer: Any) -> bool:
    """Whether the generation tasks prompt through the tokenizer's chat template, the same way for the
    fine-tuned model and the baseline: a chat-format run always (it trained so); a causal_lm run when the
    tokenizer has a template (an instruct model, which answers a bare prompt poorly); never an instruction run,
    which trained on the bare prompt."""
    if data_format == "instruction":
        return False
    return data_format == "chat" or bool(getattr(tokenizer, "chat_template", None))


def same_tokenizer(a: Any, b: Any) -> bool:
    """Whether two tokenizers split text into the same tokens (same vocabulary and class)."""
    if a is b:
        return True
    return type(a) is type(b) and len(a) == len(b) and a.get_vocab() == b.get_vocab()


def _normal_baseline(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() in NO_BASELINE else value.strip()


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def _window(window: int, model: Any) -> int:
    """The perplexity/prompt window, no longer than the model's positions."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return min(window, int(limit)) if isinstance(limit, int) and limit > 1 else window


SMALL_MODEL_PARAMS = 20_000_000


@contextlib.contextmanager
def _cpu_threads(model: Any) -> Iterator[int]:
    """One intra-op thread for a small model on the CPU: its matrices are too small to share out, and extra
    OpenMP threads spin when the cores are busy (measured 10-20x slower on a loaded 2-core machine)."""
    import torch

    previous = torch.get_num_threads()
    if next(model.parameters()).device.type != "cpu" or \
            sum(p.numel() for p in model.parameters()) >= SMALL_MODEL_PARAMS:
        yield previous
        return
    torch.set_num_threads(1)
    try:
        yield 1
    finally:
        torch.set_num_threads(previous)


def _track(run_dir: Path, recipe: Any, report: dict[str, Any], folder: Path) -> dict[str, Any]:
    from forge.evaluate.tracking import log_report, tracking_target

    uri, run_id = tracking_target(run_dir, recipe)
    if not uri or not run_id:
        return {"status": "off"}
    return log_report(uri, run_id, report, folder)
