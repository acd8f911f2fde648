"""The `general` evaluation task's names, without the harness: which entries of `evaluation.general.tasks` are
local task YAMLs, the task name each one declares, and how a harness score is named in the report
(`general/<task>/<metric>`, with `/<filter>` when the task filters its outputs, e.g. gsm8k's strict-match).

A leaf module (PyYAML only), so recipe rules can check gate names without importing lm-evaluation-harness.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

PREFIX = "general/"
NO_FILTER = "none"  # the harness's name for "the outputs as the model gave them"
YAML_SUFFIXES = (".yaml", ".yml")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\- ]")  # MLflow metric names allow these (and /, our separator)


def is_task_file(entry: str) -> bool:
    """Whether an entry of evaluation.general.tasks names a local task YAML rather than a harness task."""
    return entry.lower().endswith(YAML_SUFFIXES)


class _TolerantLoader(yaml.SafeLoader):
    """Reads a harness task YAML for its name: `!function` tags (the harness's Python hooks) read as None."""


_TolerantLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def read_task_file(path: str | Path) -> dict[str, Any]:
    """The top-level keys of a local task YAML ({} when the file cannot be read as a mapping)."""
    try:
        config = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_TolerantLoader)  # noqa: S506 (safe)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def declared_name(path: str | Path) -> str | None:
    """The `task` (or `group`) a local task YAML declares; None when the file cannot be read as one."""
    config = read_task_file(path)
    name = config.get("task") or config.get("group")
    return name if isinstance(name, str) and name else None


def listed_names(entries: Sequence[str]) -> list[str]:
    """The task names a gate may use: named tasks as written, local YAMLs by the name they declare."""
    names = []
    for entry in entries:
        name = declared_name(entry) if is_task_file(entry) else entry
        if name:
            names.append(name)
    return names


def metric_name(task: str, metric: str, filter_name: str = NO_FILTER) -> str:
    """`general/<task>/<metric>[/<filter>]`, with characters MLflow refuses in a metric name replaced by _."""
    parts = [task, metric] + ([] if filter_name == NO_FILTER else [filter_name])
    return PREFIX + "/".join(safe_name(p) for p in parts)


def safe_name(part: str) -> str:
    """One part of a general metric name as the report writes it."""
    return _UNSAFE.sub("_", part)


def split_metric(name: str) -> tuple[str, str] | None:
    """(task, metric[/filter]) of a general metric name; None for any other name."""
    if not name.startswith(PREFIX):
        return None
    task, _, metric = name[len(PREFIX):].partition("/")
    return (task, metric) if task and metric else None


def is_general_metric(name: Any) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)
