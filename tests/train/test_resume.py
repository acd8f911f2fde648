"""Resume after the process dies: SIGKILL mid-training, SIGKILL mid-save, SIGTERM from outside. The resumed
run's losses must equal the uninterrupted reference run's at every step."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from forge.train.checkpoints import MARKER, is_complete, latest_complete
from harness import ReferenceRun, read_summary, run_resumed, train_losses

pytestmark = pytest.mark.slow
CHILD = Path(__file__).with_name("child_run.py")


def start_child(recipe: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, str(CHILD), str(recipe), "--fake-data", *args], cwd=CHILD.parent,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def resume_and_compare(recipe: Path, run_dir: Path, reference: ReferenceRun, expected_from: str,
                       prepare: Callable[..., Any]) -> dict[str, Any]:
    summary = run_resumed(prepare(recipe), int(expected_from.rsplit("-", 1)[1]), resume="always")
    assert summary["status"] == "completed" and summary["steps"] == 12
    assert summary["resumed_from"] == str(run_dir / "checkpoints" / expected_from)
    expected, got = train_losses(reference.run_dir), train_losses(run_dir)
    assert sorted(got) == list(range(1, 13))
    for step in expected:
        assert math.isclose(got[step], expected[step], rel_tol=1e-6, abs_tol=1e-7), step
    assert math.isclose(summary["eval"]["loss"], reference.summary["eval"]["loss"], rel_tol=1e-6)
    return summary


def test_sigkill_mid_training_resumes_exactly(write_recipe: Callable[..., Path], prepare: Callable[..., Any],
                                              fake_data: None, reference_run: ReferenceRun) -> None:
    recipe = write_recipe("killed")
    run_dir = Path(prepare(recipe)[1].run_dir)
    child = start_child(recipe, "--kill-at-step", "6")
    output, _ = child.communicate(timeout=180)
    assert child.returncode == -signal.SIGKILL, output
    assert read_summary(run_dir)["status"] == "running"  # nobody got to write the end
    assert latest_complete(run_dir / "checkpoints").name == "checkpoint-4"
    assert max(train_losses(run_dir)) == 5  # step 5 was logged after the checkpoint (killed in step 6)
    resume_and_compare(recipe, run_dir, reference_run, "checkpoint-4", prepare)


def test_sigkill_mid_save_leaves_an_incomplete_checkpoint_that_is_skipped(
        write_recipe: Callable[..., Path], prepare: Callable[..., Any], fake_data: None,
        reference_run: ReferenceRun) -> None:
    recipe = write_recipe("killed_in_save")
    run_dir = Path(prepare(recipe)[1].run_dir)
    child = start_child(recipe, "--kill-in-save-at-step", "8")
    output, _ = child.communicate(timeout=180)
    assert child.returncode == -signal.SIGKILL, output
    half_saved = run_dir / "checkpoints" / "checkpoint-8"
    assert (half_saved / "adapter_model.safetensors").exists() and not (half_saved / MARKER).exists()
    assert not is_complete(half_saved) and latest_complete(run_dir / "checkpoints").name == "checkpoint-4"
    summary = resume_and_compare(recipe, run_dir, reference_run, "checkpoint-4", prepare)
    assert any("removed incomplete checkpoint checkpoint-8" in n for n in summary["notes"])


def test_sigterm_from_outside_exits_143_and_resumes_exactly(
        write_recipe: Callable[..., Path], prepare: Callable[..., Any], fake_data: None,
        reference_run: ReferenceRun) -> None:
    recipe = write_recipe("terminated")
    run_dir = Path(prepare(recipe)[1].run_dir)
    child = start_child(recipe, "--step-seconds", "0.3")
    metrics = run_dir / "metrics.jsonl"
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and child.poll() is None:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        if any(json.loads(line).get("step", 0) >= 3 for line in lines if line.endswith("}")):
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    output, _ = child.communicate(timeout=120)
    assert child.returncode == 143, output
    assert "SIGTERM received" in output
    summary = read_summary(run_dir)
    stopped = summary["steps"]
    assert summary["status"] == "interrupted" and summary["exit_code"] == 143 and 3 <= stopped < 12
    assert is_complete(run_dir / "checkpoints" / f"checkpoint-{stopped}")
    resume_and_compare(recipe, run_dir, reference_run, f"checkpoint-{stopped}", prepare)
