"""What the `general` evaluation task (registered in tasks.py) runs: EleutherAI's lm-evaluation-harness tasks
(by name, or local task YAMLs) on the fine-tuned model and on its baseline through the harness's own Hugging
Face wrapper (HFLM), so a domain fine-tune shows what it cost in general ability.

The wrapper gets the models `forge eval` already loaded (base + adapter, 4-bit where the run was, the baseline
by switching the adapter off): under transformers 5 the wrapper's own `load_in_4bit` route no longer exists.
Per-document scores come from the harness's logged samples; a metric whose per-document mean reproduces the
harness's score gets Forge's bootstrap interval and paired difference, any other (a corpus BLEU, a macro
group average) is reported as the harness's point value.

Offline first: with `evaluation.general.offline` the task data comes only from local files and the Hugging
Face cache. datasets and huggingface_hub read their offline switches once, at import, long before an
evaluation starts, so the tasks are loaded inside a block that sets them and puts them back afterwards.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from forge.evaluate.bootstrap import mean_of
from forge.evaluate.errors import EvaluationError
from forge.evaluate.general import NO_FILTER, is_task_file, metric_name, read_task_file
from forge.evaluate.models import EvalModel
from forge.evaluate.results import OUTPUT_CHARS, TaskResult

INSTALL_HINT = "install it with: pip install 'forge-finetune[harness]' (lm-eval, pinned in pyproject.toml)"
OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
ROW_KEYS = ("alias", "name", "sample_len", " ")  # entries of a harness result row that are not metrics
MEAN_TOLERANCE = 1e-9


@dataclass
class HarnessTasks:
    """The harness tasks of one evaluation, loaded once (their data read) and run on each model."""

    settings: Any  # the recipe's evaluation.general
    objects: list[Any]  # the harness's Task and Group objects, top level
    manager: Any  # its TaskManager
    sources: dict[str, str] = field(default_factory=dict)  # task or group name -> "harness" or the YAML path
    listed: list[str] = field(default_factory=list)  # the names of the top-level tasks and groups
    version: str = ""


def load_harness_tasks(general: Any) -> HarnessTasks:
    """Load (and read the data of) every task in evaluation.general.tasks, before any model is loaded, so a
    missing dataset or a misspelt name stops the evaluation at once with a one-line error."""
    try:
        import lm_eval
    except ImportError:
        raise EvaluationError("evaluation.tasks has general, which runs lm-evaluation-harness, and it is not "
                              "installed", INSTALL_HINT) from None
    entries = list(general.tasks)
    if not entries:
        raise EvaluationError("evaluation.tasks has general but evaluation.general.tasks is empty",
                              "list harness tasks or local task YAMLs, e.g. tasks: [arc_easy, hellaswag]")
    files = [Path(e) for e in entries if is_task_file(e)]
    for file in files:
        if not file.is_file():
            raise EvaluationError(f"evaluation.general.tasks: task file {file} does not exist",
                                  "give the path of a harness task YAML (relative to the recipe), or a task name")
    with _offline(general.offline), _quiet():
        # the built-in index (thousands of YAMLs, seconds) only when a task is named; a group YAML's folder is
        # indexed so that the tasks it names resolve
        groups = {str(f.resolve().parent) for f in files if "group" in read_task_file(f)}
        manager = _task_manager(tuple(sorted(groups)), len(files) < len(entries))
        tasks = HarnessTasks(general, [], manager, version=getattr(lm_eval, "__version__", ""))
        for entry in entries:
            loaded = _load_one(manager, entry, general.offline)
            top = _top_level(loaded)
            tasks.objects += top
            tasks.listed += [getattr(o, "task_name", None) or getattr(o, "name", "") for o in top]
            for name in [*loaded.get("groups", {}), *loaded["tasks"]]:
                tasks.sources[name] = entry if is_task_file(entry) else "harness"
    return tasks


@functools.lru_cache(maxsize=4)
def _task_manager(include_path: tuple[str, ...], include_defaults: bool) -> Any:
    """The harness's task index: building the built-in one reads ~14,700 YAML files (about 10 s on 2 cores), and
    it is the same for every evaluation of a process; tasks are built anew from it on every load."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include_path) or None, include_defaults=include_defaults)


def _load_one(manager: Any, entry: str, offline: bool) -> dict[str, Any]:
    spec: Any = _task_config(Path(entry)) if is_task_file(entry) else entry
    if not is_task_file(entry) and entry not in manager.all_tasks:
        from forge.recipe.errors import did_you_mean

        raise EvaluationError(f"evaluation.general.tasks: {entry!r} is not an lm-evaluation-harness task",
                              did_you_mean(entry, manager.all_tasks) or
                              "see `lm-eval ls tasks`, or give the path of a local task YAML")
    try:
        return manager.load([spec])
    except (ConnectionError, FileNotFoundError, TimeoutError) as e:  # the Hub unreachable, the cache empty
        if is_task_file(entry):
            raise EvaluationError(f"evaluation.general.tasks: the data of task file {entry} cannot be read: "
                                  f"{_first_line(e)}", "point dataset_kwargs.data_files at local JSON or JSONL "
                                  "files (relative to the YAML)") from None
        raise _not_cached(manager, entry, e, offline) from None
    except Exception as e:  # a broken task definition fails in many ways; say which one and how
        what = f"task file {entry}" if is_task_file(entry) else f"task {entry}"
        raise EvaluationError(f"evaluation.general.tasks: lm-evaluation-harness cannot load {what}: "
                              f"{type(e).__name__}: {_first_line(e)}",
                              "check the task definition (lm-eval validate --tasks ...)") from None


def _task_config(path: Path) -> dict[str, Any] | str:
    """A task YAML as the harness reads it, its relative data files made relative to the YAML (the harness
    would read them relative to the working directory); a group YAML by its name."""
    from lm_eval.tasks._yaml_loader import load_yaml

    try:
        config = load_yaml(path, resolve_func=True)
    except Exception as e:  # YAML syntax, a missing include or !function module
        raise EvaluationError(f"evaluation.general.tasks: task file {path} cannot be read: {type(e).__name__}: "
                              f"{_first_line(e)}", "fix the YAML (see lm-evaluation-harness's task guide)") from None
    if isinstance(config.get("group"), str):  # a group goes by its name (its folder is indexed, so are its tasks)
        return config["group"]
    if "task" not in config:
        return str(path)
    kwargs = config.get("dataset_kwargs")
    if isinstance(kwargs, dict) and kwargs.get("data_files") is not None:
        config = {**config, "dataset_kwargs": {**kwargs, "data_files": _beside(kwargs["data_files"], path.parent)}}
    return config


def _beside(files: Any, folder: Path) -> Any:
    if isinstance(files, str):
        return files if "://" in files or os.path.isabs(files) else str(folder / files)
    if isinstance(files, list):
        return [_beside(f, folder) for f in files]
    if isinstance(files, dict):
        return {k: _beside(v, folder) for k, v in files.items()}
    return files


def _not_cached(manager: Any, entry: str, error: BaseException, offline: bool) -> EvaluationError:
    """One line: which dataset is missing and three ways to provide it."""
    config = getattr(manager.task_index.get(entry), "cfg", None) or {}
    dataset, subset = config.get("dataset_path"), config.get("dataset_name")
    if dataset:  # one task, one dataset: datasets can fetch it alone
        what = f"{dataset}, {subset}" if subset else dataset
        fetch = f"datasets.load_dataset({dataset!r}{', ' + repr(subset) if subset else ''})"
        fetch = f"run `python -c \"import datasets; {fetch}\"`"
    else:  # a group or a tag: the harness knows its datasets and configurations
        quoted = re.search(r"'([\w.\-]+/[\w.\-]+)'", str(error))  # "Couldn't reach 'cais/mmlu' on the Hub"
        what = f"first missing: {quoted.group(1)}" if quoted else "its Hub datasets"
        fetch = f"run `lm-eval run --model hf --model_args pretrained=MODEL --tasks {entry} --limit 1`"
    why = "evaluation.general.offline is true" if offline else "the Hugging Face Hub could not be reached"
    return EvaluationError(
        f"evaluation.general.tasks: the data of {entry} ({what}) is not in the Hugging Face cache and {why}",
        f"{fetch} where the Hub is reachable (same HF_HOME), "
        + ("or set evaluation.general.offline: false on a machine that reaches the Hub, " if offline else "")
        + "or give a local task YAML (dataset_path: json, dataset_kwargs: {data_files: ...})",
        doc="harness-data-not-cached")


def _top_level(loaded: Mapping[str, Any]) -> list[Any]:
    """The groups and tasks of one loaded entry that no group of it holds (a tag gives several tasks)."""
    children = {c for names in loaded.get("group_map", {}).values() for c in names}
    return [g for name, g in loaded.get("groups", {}).items() if name not in children] + \
           [t for name, t in loaded["tasks"].items() if name not in children]


@contextlib.contextmanager
def _offline(enabled: bool) -> Iterator[None]:
    """datasets and huggingface_hub offline for the block (their flags and the environment), then as before."""
    if not enabled:
        yield
        return
    import datasets.config
    import huggingface_hub.constants as hub

    saved = (datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, hub.HF_HUB_OFFLINE,
             {k: os.environ.get(k) for k in OFFLINE_ENV})
    datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = hub.HF_HUB_OFFLINE = True
    os.environ.update({k: "1" for k in OFFLINE_ENV})
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE, hub.HF_HUB_OFFLINE = saved[:3]
        for key, value in saved[3].items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet(progress: bool = False) -> Iterator[None]:
    """The harness logs every step at INFO and warns that it was handed a loaded model (as Forge means to):
    its errors only, and datasets' progress bars only with progress on."""
    import datasets
    from datasets.utils.tqdm import are_progress_bars_disabled

    logger = logging.getLogger("lm_eval")
    level, bars_off = logger.level, are_progress_bars_disabled()
    logger.setLevel(logging.ERROR)
    if not progress:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        logger.setLevel(level)
        if not bars_off:
            datasets.enable_progress_bars()


def run_harness(tasks: HarnessTasks, model: EvalModel, progress: bool = False) -> dict[str, Any]:
    """simple_evaluate on one model (its adapter state as `model.use()` set it), with the per-document samples."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    general = tasks.settings
    with _offline(general.offline), _quiet(progress):
        lm = HFLM(pretrained=model.model, tokenizer=model.tokenizer, batch_size=general.batch_size)
        out = simple_evaluate(model=lm, tasks=list(tasks.objects), task_manager=tasks.manager,
                              num_fewshot=general.num_fewshot, limit=general.limit, log_samples=True,
                              bootstrap_iters=0)  # Forge's own bootstrap gives the intervals
    if out is None:
        raise EvaluationError("lm-evaluation-harness returned no results", "run forge eval as one process")
    return out


def harness_parts(out: Mapping[str, Any], label: str, sources: Mapping[str, str] | None = None,
                  keep_samples: int = 3) -> dict[str, TaskResult]:
    """One TaskResult per task and group of a simple_evaluate result: the harness's scores as metrics
    `general/<task>/<metric>[/<filter>]`, and per-document units where the logged samples reproduce them."""
    samples = out.get("samples") or {}
    groups = out.get("group_subtasks") or {}
    parts: dict[str, TaskResult] = {}
    for task, row in (out.get("results") or {}).items():
        scores = _scores(row)
        if not scores:
            continue
        part = TaskResult(f"general/{task}", label)
        keys, columns = _units(_leaf_samples(task, samples, groups), list(scores))
        for (metric, filter_name), value in scores.items():
            name = metric_name(task, metric, filter_name)
            part.metrics[name] = value
            part.higher_is_better[name] = bool((out.get("higher_is_better") or {}).get(task, {}).get(metric, True))
        statistics = {}
        for i, (metric, filter_name) in enumerate(scores):
            column = columns[:, i] if columns is not None else None
            if column is not None and _reproduces(column, scores[(metric, filter_name)]):
                statistics[metric_name(task, metric, filter_name)] = mean_of(i)
        if statistics:
            part.units, part.statistics = columns, statistics
        n = (out.get("n-samples") or {}).get(task, {})
        part.details = {"documents": len(keys) if keys else n.get("effective"),
                        "num_fewshot": (out.get("n-shot") or {}).get(task),
                        "version": (out.get("versions") or {}).get(task),
                        "source": (sources or {}).get(task, "harness")}
        if task in groups:
            part.details["subtasks"] = len(_leaves(task, groups))
        part.samples = [_sample(s) for s in samples.get(task, [])
                        if s.get("filter", NO_FILTER) == _first_filter(scores)][:keep_samples]
        parts[task] = part
    return parts


def _scores(row: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    """{(metric, filter): value} of a harness result row ("acc,none": 0.5), numbers only."""
    scores = {}
    for key, value in row.items():
        if key in ROW_KEYS or "," not in key or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        metric, _, filter_name = key.partition(",")
        if metric.endswith("_stderr") or not np.isfinite(value):
            continue
        scores[(metric, filter_name)] = float(value)
    return scores


def _leaves(task: str, groups: Mapping[str, Sequence[str]]) -> list[str]:
    if task not in groups:
        return [task]
    return [leaf for child in groups[task] for leaf in _leaves(child, groups)]


def _leaf_samples(task: str, samples: Mapping[str, list[dict[str, Any]]],
                  groups: Mapping[str, Sequence[str]]) -> list[tuple[str, dict[str, Any]]]:
    """(leaf task, sample) of a task, or of every task under a group (a group's score pools its documents)."""
    return [(leaf, s) for leaf in _leaves(task, groups) for s in samples.get(leaf, [])]


def _units(samples: list[tuple[str, dict[str, Any]]], columns: list[tuple[str, str]]
           ) -> tuple[list[tuple[str, int]], np.ndarray | None]:
    """One row per document, in (task, doc_id) order so two models' rows pair up; a column is nan where a
    sample gives no number for that metric (a corpus metric's sample carries its inputs, not a score)."""
    rows: dict[tuple[str, int], list[float]] = {}
    for leaf, sample in samples:
        row = rows.setdefault((leaf, int(sample.get("doc_id", -1))), [float("nan")] * len(columns))
        for i, (metric, filter_name) in enumerate(columns):
            value = sample.get(metric)
            if sample.get("filter", NO_FILTER) == filter_name and isinstance(value, (bool, int, float)):
                row[i] = float(value)
    if not rows:
        return [], None
    keys = sorted(rows)
    return keys, np.array([rows[k] for k in keys], dtype=np.float64).reshape(len(keys), len(columns))


def _reproduces(column: np.ndarray, score: float) -> bool:
    """Whether the per-document values average to the harness's score (then resampling them is sound)."""
    if np.isnan(column).any():
        return False
    mean = float(column.mean())
    return abs(mean - score) <= MEAN_TOLERANCE * max(1.0, abs(mean))


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [""])[0]


def _first_filter(scores: Mapping[tuple[str, str], float]) -> str:
    return next(iter(scores))[1]


def _sample(sample: Mapping[str, Any]) -> dict[str, Any]:
    """A logged sample, short: its document, target, what the model gave, and its scores."""
    response = sample.get("filtered_resps")
    if isinstance(response, list) and response and all(isinstance(r, (list, tuple)) for r in response):
        response = [round(float(r[0]), 3) for r in response]  # loglikelihoods of the choices
    elif isinstance(response, list) and len(response) == 1:
        response = response[0]  # one generation
    entry = {"id": sample.get("doc_id"), "target": str(sample.get("target"))[:OUTPUT_CHARS],
             "output": str(response)[:OUTPUT_CHARS]}
    entry.update({m: sample[m] for m in sample.get("metrics", []) if isinstance(sample.get(m), (bool, int, float))})
    return entry
