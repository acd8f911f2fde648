"""Faults on purpose, beyond test_resume.py and test_faults.py: SIGKILL at random steps (seeded; set
FORGE_FAULT_SEED to replay) twice in a row, then resume, with the final adapter equal to the uninterrupted run's;
a checkpoint damaged after it was written (truncated, or the same size with bytes flipped) skipped in favour of
the previous one; a real full disk (a small tmpfs, where this process may mount one) during a save."""
from __future__ import annotations

import errno
import math
import os
import random
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from forge.model.errors import ForgeRuntimeError
from forge.train.checkpoints import is_complete, latest_complete
from harness import ReferenceRun, read_summary, run_resumed, train_losses
from test_resume import start_child

pytestmark = pytest.mark.slow
SEED = int(os.environ.get("FORGE_FAULT_SEED", "20261126"))
SAVE_STEPS, MAX_STEPS = 4, 12


def checkpoint_before(step: int) -> str | None:
    """The newest checkpoint a run killed at the end of `step` has completed (the save of a step runs after
    its on_step_end, where the child kills itself)."""
    saved = SAVE_STEPS * ((step - 1) // SAVE_STEPS)
    return f"checkpoint-{saved}" if saved else None


def kill_child_at(recipe: Path, step: int) -> None:
    child = start_child(recipe, "--kill-at-step", str(step))
    output, _ = child.communicate(timeout=300)
    assert child.returncode == -signal.SIGKILL, output


def assert_same_run(run_dir: Path, reference: ReferenceRun, rel_tol: float = 1e-6) -> None:
    """Every step's loss and every tensor of the final adapter equal the uninterrupted run's."""
    import torch
    from safetensors.torch import load_file

    expected, got = train_losses(reference.run_dir), train_losses(run_dir)
    assert sorted(got) == list(range(1, MAX_STEPS + 1))
    for step in expected:
        assert math.isclose(got[step], expected[step], rel_tol=rel_tol, abs_tol=1e-7), step
    want = load_file(reference.run_dir / "adapter" / "adapter_model.safetensors")
    have = load_file(run_dir / "adapter" / "adapter_model.safetensors")
    assert sorted(have) == sorted(want)
    for name in want:
        torch.testing.assert_close(have[name], want[name], rtol=1e-5, atol=1e-6, msg=name)


def test_sigkill_at_random_steps_twice_then_resume_gives_the_same_adapter(
        write_recipe: Callable[..., Path], prepare: Callable[..., Any], fake_data: None,
        reference_run: ReferenceRun) -> None:
    from forge.train.run import run_recipe

    rng = random.Random(SEED)
    first = rng.randint(2, MAX_STEPS - 3)
    second = rng.randint(first + 1, MAX_STEPS - 1)
    recipe = write_recipe("random_kills")
    run_dir = Path(prepare(recipe)[1].run_dir)
    for step in (first, second):
        kill_child_at(recipe, step)
        latest = latest_complete(run_dir / "checkpoints")
        assert (latest.name if latest else None) == checkpoint_before(step), (SEED, first, second)
        assert read_summary(run_dir)["status"] == "running"
    resumed_from = checkpoint_before(second)
    summary = run_resumed(prepare(recipe), int(resumed_from.rsplit("-", 1)[1]), resume="auto") if resumed_from \
        else run_recipe(*prepare(recipe), resume="auto", progress=False)  # nothing saved yet: a fresh start
    assert summary["status"] == "completed" and summary["steps"] == MAX_STEPS, (SEED, first, second)
    assert summary["resumed_from"] == (str(run_dir / "checkpoints" / checkpoint_before(second))
                                       if checkpoint_before(second) else None)
    assert_same_run(run_dir, reference_run)


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_a_damaged_newest_checkpoint_is_skipped_for_the_previous_one(
        damage: str, write_recipe: Callable[..., Path], prepare: Callable[..., Any], fake_data: None,
        reference_run: ReferenceRun) -> None:
    from forge.train.run import run_recipe

    recipe = write_recipe(f"damaged_{damage}")
    run_dir = Path(prepare(recipe)[1].run_dir)
    kill_child_at(recipe, 10)
    newest = run_dir / "checkpoints" / "checkpoint-8"
    assert is_complete(newest)
    weights = newest / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    else:  # same size, a few bytes of tensor data flipped: only the content hash can tell
        for i in range(len(data) - 64, len(data) - 32):
            data[i] ^= 0xFF
        weights.write_bytes(bytes(data))
    assert not is_complete(newest) and latest_complete(run_dir / "checkpoints").name == "checkpoint-4"
    summary = run_resumed(prepare(recipe), 4, resume="auto")
    assert summary["status"] == "completed" and summary["resumed_from"].endswith("checkpoint-4")
    assert any("removed incomplete checkpoint checkpoint-8" in n for n in summary["notes"])
    assert_same_run(run_dir, reference_run)


# ------------------------------------------------------------------------------------- a real full disk
def _mount_tmpfs(folder: Path, size: int) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def _folder_bytes(folder: Path) -> int:
    """Bytes a folder takes on a tmpfs: every file rounded up to whole 4 KiB pages."""
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def small_disk(tmp_path: Path, reference_run: ReferenceRun):
    """A tmpfs that holds the run's small files and one checkpoint and a half: the second save fills it."""
    checkpoint = _folder_bytes(latest_complete(reference_run.run_dir / "checkpoints"))
    assert checkpoint > 0
    size = 256 * 1024 + checkpoint * 3 // 2
    folder = tmp_path / "disk"
    if not _mount_tmpfs(folder, size):
        pytest.skip("cannot mount a tmpfs here (needs root); test_faults.py simulates ENOSPC instead")
    try:
        yield folder, size
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_real_full_disk_during_a_save_keeps_the_last_checkpoint_and_resumes(
        small_disk: tuple[Path, int], write_recipe: Callable[..., Path], prepare: Callable[..., Any],
        fake_data: None, reference_run: ReferenceRun) -> None:
    from forge.train.run import run_recipe

    disk, size = small_disk
    recipe = write_recipe("full_disk")
    overrides = [f"run.output_dir={disk}"]
    run_dir = Path(prepare(recipe, *overrides)[1].run_dir)
    with pytest.raises(ForgeRuntimeError, match="disk filled up") as info:
        run_recipe(*prepare(recipe, *overrides), progress=False)
    cause = info.value.__cause__  # ENOSPC, or torch.save's RuntimeError ("iostream error") on a full disk
    assert (isinstance(cause, OSError) and cause.errno == errno.ENOSPC) or isinstance(cause, RuntimeError), cause
    assert "checkpoint-4" in info.value.hint
    assert latest_complete(run_dir / "checkpoints").name == "checkpoint-4"
    assert not any(is_complete(p) for p in (run_dir / "checkpoints").glob("checkpoint-*")
                   if p.name != "checkpoint-4")
    assert read_summary(run_dir)["status"] in ("running", "failed")  # the last summary that fitted

    subprocess.run(["mount", "-o", f"remount,size={size * 8}", str(disk)], check=True)  # space freed
    summary = run_resumed(prepare(recipe, *overrides), 4)
    assert summary["status"] == "completed" and summary["resumed_from"].endswith("checkpoint-4")
    assert_same_run(run_dir, reference_run)


@pytest.fixture
def tiny_disk(tmp_path: Path, reference_run: ReferenceRun):
    """A tmpfs that holds the run's small files and half a checkpoint: the first save fills it."""
    checkpoint = _folder_bytes(latest_complete(reference_run.run_dir / "checkpoints"))
    small_files = sum(-(-p.stat().st_size // 4096) * 4096 for p in reference_run.run_dir.iterdir() if p.is_file())
    size = small_files + 64 * 1024 + checkpoint // 2
    folder = tmp_path / "disk"
    if not _mount_tmpfs(folder, size):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_disk_full_at_the_first_checkpoint_is_one_line_naming_the_folder(
        tiny_disk: Path, write_recipe: Callable[..., Path], fake_data: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    """safetensors reports a full disk as its own error type (not OSError): still one line, exit 2, no traceback."""
    from forge.cli import main

    recipe = write_recipe("first_save")
    code = main(["run", str(recipe), f"run.output_dir={tiny_disk}", "evaluation.enabled=false"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("forge:")]
    assert code == 2 and "Traceback" not in err, err[-3000:]
    assert len(lines) == 1 and f"the disk filled up while training wrote to {tiny_disk}/first_save" in lines[0]
    assert "Forge resumes from the start" in lines[0]
    assert not any(is_complete(p) for p in (tiny_disk / "first_save" / "checkpoints").glob("checkpoint-*"))
