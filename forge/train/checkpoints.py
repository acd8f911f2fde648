"""Checkpoints that can be trusted, and the resume decision.

The trainer writes `checkpoints/checkpoint-<step>/` (adapter, optimizer, scheduler, RNG states, trainer state
with the data position). Forge then fsyncs those files and writes `forge-complete.json` (step, file sizes)
last: a checkpoint without a valid marker is incomplete (a kill or a full disk mid-save) and is never
resumed from. The marker also holds the SHA-256 of every file up to HASHED_BYTES (the adapter, trainer state,
RNG states; for LoRA the optimizer too), so a file damaged later, even at the same size, makes the checkpoint
incomplete; larger files (a full model's optimizer state) are checked by size only, to keep saves fast.
Retention (keep the last N and the best) is the trainer's `save_total_limit`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import fields
from pathlib import Path
from typing import Any, Literal

from forge.model.errors import ForgeRuntimeError
from forge.atomic import fsync_dir, read_json, read_jsonl, write_json, write_text
from forge.plan import EightBitPlan, FourBitPlan, LaunchPlan, LoraPlan, ModelPlan

MARKER = "forge-complete.json"
HASHED_BYTES = 256 * 2**20
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
ResumeMode = Literal["auto", "always", "never", "prepared"]


def checkpoint_step(path: Path) -> int | None:
    match = CHECKPOINT_RE.match(Path(path).name)
    return int(match.group(1)) if match else None


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MARKER}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_marker(folder: Path, step: int) -> None:
    """Declare a saved checkpoint complete: fsync its files, then write the marker atomically."""
    folder = Path(folder)
    files = _files(folder)
    for rel in files:
        with open(folder / rel, "rb") as f:
            os.fsync(f.fileno())
    for sub in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        fsync_dir(sub)
    hashes = {rel: _sha256(folder / rel) for rel, size in files.items() if size <= HASHED_BYTES}
    write_json(folder / MARKER, {"step": step, "written_at": time.time(), "files": files, "sha256": hashes})


def is_complete(folder: Path) -> bool:
    """A marker that parses, names this step, and lists files that are all there at their recorded sizes
    and, where it recorded one, with their SHA-256 (markers written before hashes count by size)."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
        files, hashes = marker["files"], marker.get("sha256", {})
        if marker["step"] != checkpoint_step(folder) or not files:
            return False
        if not all((Path(folder) / rel).stat().st_size == size for rel, size in files.items()):
            return False
        return all(_sha256(Path(folder) / rel) == digest for rel, digest in hashes.items() if rel in files)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
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


def prepare_run_dir(run_dir: Path, resume: ResumeMode, notes: list[str],
                    sources_sha256: dict[str, str] | None = None,
                    plan: dict[str, Any] | None = None) -> Path | None:
    """Make run_dir ready and return the checkpoint to resume from, if any.

    auto: resume from the newest complete checkpoint when there is one, else start fresh.
    always: resume, or fail when there is nothing to resume from. never: start fresh.
    Starting fresh over a non-empty run directory first moves it aside.
    prepared: the launcher already decided (the processes of a multi-process run): take the newest
    complete checkpoint if there is one and change nothing.
    sources_sha256: the data files' digests now; resuming a run whose summary recorded other digests is refused
    (the data position in the checkpoint would point into different examples).
    plan: the plan now (Plan.to_dict()); resuming checkpoints of another model or adapter shape than the one
    the run directory's plan.json describes is refused (the weights would not load).
    """
    if resume not in ("auto", "always", "never", "prepared"):
        raise ForgeRuntimeError(f"unknown resume mode {resume!r}", "use auto, always or never", doc="resume-problems")
    root = run_dir / "checkpoints"
    if resume == "prepared":
        latest = latest_complete(root)
        if latest is not None:
            notes.append(f"resuming from {latest.name} (step {checkpoint_step(latest) or 0})")
        return latest
    if resume != "never":
        latest = latest_complete(root)
        if latest is not None:
            if sources_sha256 is not None:
                check_sources_unchanged(run_dir, sources_sha256)
            if plan is not None:
                recorded = read_json(run_dir / "plan.json")
                check_model_unchanged(run_dir, recorded, plan)
                check_processes(run_dir, recorded, plan, notes)
            for path in remove_incomplete(root):
                notes.append(f"removed incomplete checkpoint {path.name} (interrupted while saving)")
            step = checkpoint_step(latest) or 0
            truncate_metrics(run_dir / "metrics.jsonl", step)
            notes.append(f"resuming from {latest.name} (step {step})")
            return latest
        if resume == "always":
            raise ForgeRuntimeError(f"resume=always, but {run_dir} holds no complete checkpoint",
                                    "run with resume auto or never to start fresh", doc="resume-problems")
    if run_dir.exists() and any(run_dir.iterdir()):
        moved = move_aside(run_dir)
        notes.append(f"starting fresh: the previous run directory was moved to {moved}")
    run_dir.mkdir(parents=True, exist_ok=True)
    return None


class DataChanged(ForgeRuntimeError):
    """A data source file differs from the one the run started with (exit 2: bad input)."""

    doc = "data-changed"


def check_sources_unchanged(run_dir: Path, sources_sha256: dict[str, str]) -> None:
    """Raise DataChanged when a data file recorded in the run's summary.json is gone, differs, or a new one
    joined a source folder. A summary without digests (a run from an older Forge) is not checked."""
    recorded = (read_json(run_dir / "summary.json").get("data") or {}).get("sources_sha256")
    if not isinstance(recorded, dict):
        return
    for file in sorted(set(recorded) | set(sources_sha256)):
        old, new = recorded.get(file), sources_sha256.get(file)
        if old == new:
            continue
        what = ("is gone" if new is None else "is new in a data source folder" if old is None
                else f"changed (sha256 {old[:12]} -> {new[:12]})")
        raise DataChanged(f"cannot resume {run_dir.name}: data file {file} {what} since the run started",
                          "restore the file as it was to resume, or run with --fresh to start over on the new data")


def checkpoint_info(root: Path) -> dict[str, Any]:
    """What the run directory holds now, for the summary."""
    complete = [p for p in list_checkpoints(root) if is_complete(p)]
    return {"checkpoints": [p.name for p in complete], "last_checkpoint": str(complete[-1]) if complete else None}


# What a checkpoint's weights depend on: resuming with any of these changed cannot load them. The keys are
# field names of the plan's records (plan.json holds Plan.to_dict(), and a run directory's plan.json from any
# earlier Forge is read as that dict); _check_plan_keys refuses, at import, a key that no record has.
MODEL_KEYS = {"model": ("name_or_path", "revision", "task", "num_labels", "tiny", "domain_tokens"),
              "lora": ("r", "target_modules", "modules_to_save", "use_dora", "bias"),
              "quantization": ("load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type")}
# What decides whether a checkpoint's optimizer state can be read back (check_processes)
LAUNCH_KEYS = {"launch": ("strategy", "world_size")}
PLAN_RECORDS: dict[str, tuple[type, ...]] = {"model": (ModelPlan,), "lora": (LoraPlan,),
                                            "quantization": (FourBitPlan, EightBitPlan), "launch": (LaunchPlan,)}


def _check_plan_keys(keys: dict[str, tuple[str, ...]]) -> None:
    """Raise RuntimeError when a key is not a field of its section's plan record: renamed there, the resume
    checks would compare None with None and pass silently."""
    for section, names in keys.items():
        known = {f.name for record in PLAN_RECORDS[section] for f in fields(record)}
        unknown = [name for name in names if name not in known]
        if unknown:
            records = ", ".join(record.__name__ for record in PLAN_RECORDS[section])
            raise RuntimeError(f"forge/train/checkpoints.py reads plan.{section} keys {unknown} that {records} "
                               "(forge/plan.py) no longer has: rename them here too")


_check_plan_keys(MODEL_KEYS)
_check_plan_keys(LAUNCH_KEYS)


def weights_identity(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan's values that decide the shapes of the trained weights, as 'section.key': value. `plan` is a plan
    as plan.json holds it (Plan.to_dict())."""
    shape: dict[str, Any] = {}
    for section, keys in MODEL_KEYS.items():
        values = plan.get(section)
        shape[f"{section}.enabled"] = values is not None
        for key in keys:
            shape[f"{section}.{key}"] = (values or {}).get(key)
    if not str(shape["model.name_or_path"]).startswith("forge:"):
        del shape["model.tiny"]  # the shape of Forge's built-in model, not of a model from a folder or the hub
    return shape


class ModelChanged(ForgeRuntimeError):
    """The recipe now describes another model or adapter than the checkpoints hold (exit 2: bad input)."""

    doc = "resume-problems"


def check_model_unchanged(run_dir: Path, recorded: dict[str, Any], plan: dict[str, Any]) -> None:
    """Raise ModelChanged when the run directory's plan.json (`recorded`) trained another model or adapter
    shape. A run directory without plan.json (written by every Forge run) is not checked."""
    if not recorded:
        return
    before, now = weights_identity(recorded), weights_identity(plan)
    changed = [key for key in now if before.get(key) != now[key]]
    if changed:
        key = changed[0]
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise ModelChanged(f"cannot resume {run_dir.name}: its checkpoints were trained with {key} "
                           f"{before.get(key)!r}, and the recipe now says {now[key]!r}{more}",
                           "restore the recipe to resume, or run with --fresh to start over (the old run is "
                           "moved aside)")


def _processes(launch: dict[str, Any]) -> tuple[str, int]:
    strategy, world = LAUNCH_KEYS["launch"]
    return str(launch.get(strategy, "none")), int(launch.get(world) or 1)


def check_processes(run_dir: Path, recorded: dict[str, Any], plan: dict[str, Any], notes: list[str]) -> None:
    """DeepSpeed writes each process's optimizer shard, so its checkpoints resume only under DeepSpeed with
    as many processes (ModelChanged otherwise); plain and DDP checkpoints resume with any count, with a note
    that the examples per optimizer step change with it. `recorded`: the run directory's plan.json."""
    launch = recorded.get("launch")
    if not isinstance(launch, dict):
        return
    (old_strategy, old_world), (strategy, world) = _processes(launch), _processes(plan.get("launch") or {})
    if (old_strategy, old_world) == (strategy, world):
        return
    if "deepspeed" in (old_strategy, strategy) and (old_strategy != strategy or old_world != world):
        raise ModelChanged(f"cannot resume {run_dir.name}: its checkpoints were written by {old_world} "
                           f"process(es) under {old_strategy}, and the recipe now runs {world} under {strategy} "
                           "(DeepSpeed checkpoints hold one optimizer shard per process)",
                           f"resume with distribution.strategy {old_strategy} and {old_world} process(es) in all, "
                           "or run with --fresh to start over")
    if old_world != world:
        notes.append(f"resuming with {world} process(es) where the checkpoints were written by {old_world}: "
                     "each optimizer step now sees micro_batch_size x gradient_accumulation_steps x "
                     f"{world} examples")
