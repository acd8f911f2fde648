"""Checkpoints that can be trusted, and the resume decision.

The trainer writes `checkpoints/checkpoint-<step>/` (adapter, optimizer, scheduler, RNG states, trainer state
with the data position). Forge then fsyncs those files and writes `forge-complete.json` (step, file sizes)
last: a checkpoint without a valid marker is incomplete (a kill or a full disk mid-save) and is never
resumed from. Retention (keep the last N and the best) is the trainer's `save_total_limit`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from forge.model.errors import ForgeRuntimeError
from forge.train.atomic import fsync_dir, read_jsonl, write_json, write_text

MARKER = "forge-complete.json"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
ResumeMode = Literal["auto", "always", "never", "prepared"]


def checkpoint_step(path: Path) -> int | None:
    match = CHECKPOINT_RE.match(Path(path).name)
    return int(match.group(1)) if match else None


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MARKER}


def write_marker(folder: Path, step: int) -> None:
    """Declare a saved checkpoint complete: fsync its files, then write the marker atomically."""
    folder = Path(folder)
    for rel in _files(folder):
        with open(folder / rel, "rb") as f:
            os.fsync(f.fileno())
    for sub in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        fsync_dir(sub)
    write_json(folder / MARKER, {"step": step, "written_at": time.time(), "files": _files(folder)})


def is_complete(folder: Path) -> bool:
    """A marker that parses, names this step, and lists files that are all there at their recorded sizes."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
        files = marker["files"]
        if marker["step"] != checkpoint_step(folder) or not files:
            return False
        return all((Path(folder) / rel).stat().st_size == size for rel, size in files.items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def list_checkpoints(root: Path) -> list[Path]:
    """Checkpoint folders under root, oldest step first."""
    if not Path(root).is_dir():
        return []
    found = [p for p in Path(root).iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return sorted(found, key=lambda p: checkpoint_step(p) or 0)


def latest_complete(root: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    complete = [p for p in list_checkpoints(root) if is_complete(p)]
    return complete[-1] if complete else None


def remove_incomplete(root: Path) -> list[Path]:
    """Delete checkpoint folders without a valid marker (Forge wrote them; they cannot be resumed)."""
    removed = [p for p in list_checkpoints(root) if not is_complete(p)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def move_aside(run_dir: Path) -> Path:
    """Rename an existing run directory to `<name>.<timestamp>` (never delete a user's files)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = run_dir.with_name(f"{run_dir.name}.{stamp}-{n}")
    os.rename(run_dir, target)
    return target


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the metric lines up to step: a resumed run logs the later steps again."""
    if not Path(path).exists():
        return
    kept = [r for r in read_jsonl(path) if r.get("step", 0) <= step and r.get("kind") != "end"]
    write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def prepare_run_dir(run_dir: Path, resume: ResumeMode, notes: list[str]) -> Path | None:
    """Make run_dir ready and return the checkpoint to resume from, if any.

    auto: resume from the newest complete checkpoint when there is one, else start fresh.
    always: resume, or fail when there is nothing to resume from. never: start fresh.
    Starting fresh over a non-empty run directory first moves it aside.
    prepared: the launcher already decided (the processes of a multi-process run): take the newest
    complete checkpoint if there is one and change nothing.
    """
    if resume not in ("auto", "always", "never", "prepared"):
        raise ForgeRuntimeError(f"unknown resume mode {resume!r}", "use auto, always or never")
    root = run_dir / "checkpoints"
    if resume == "prepared":
        latest = latest_complete(root)
        if latest is not None:
            notes.append(f"resuming from {latest.name} (step {checkpoint_step(latest) or 0})")
        return latest
    if resume != "never":
        latest = latest_complete(root)
        if latest is not None:
            for path in remove_incomplete(root):
                notes.append(f"removed incomplete checkpoint {path.name} (interrupted while saving)")
            step = checkpoint_step(latest) or 0
            truncate_metrics(run_dir / "metrics.jsonl", step)
            notes.append(f"resuming from {latest.name} (step {step})")
            return latest
        if resume == "always":
            raise ForgeRuntimeError(f"resume=always, but {run_dir} holds no complete checkpoint",
                                    "run with resume auto or never to start fresh")
    if run_dir.exists() and any(run_dir.iterdir()):
        moved = move_aside(run_dir)
        notes.append(f"starting fresh: the previous run directory was moved to {moved}")
    run_dir.mkdir(parents=True, exist_ok=True)
    return None


def checkpoint_info(root: Path) -> dict[str, Any]:
    """What the run directory holds now, for the summary."""
    complete = [p for p in list_checkpoints(root) if is_complete(p)]
    return {"checkpoints": [p.name for p in complete], "last_checkpoint": str(complete[-1]) if complete else None}
