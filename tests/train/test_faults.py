"""Faults in-process: a NaN loss, a full disk while saving, a signal, an empty dataset, resume=always."""
from __future__ import annotations

import errno
import math
import os
import signal
from pathlib import Path
from typing import Any, Callable

import pytest
from transformers import TrainerCallback

from forge.model.errors import ForgeRuntimeError
from forge.train.checkpoints import is_complete, latest_complete
from harness import ReferenceRun, read_metrics, read_summary, run_resumed, train_losses

pytestmark = pytest.mark.slow

NAN_LOSS = '''
from forge.train.losses import LOSSES, token_cross_entropy

TRAINING_CALLS = [0]


@LOSSES.register("nan_from_step_6")
def nan_from_step_6(outputs, labels, num_items_in_batch=None):
    """Cross-entropy that turns NaN from the sixth training micro-batch on (for tests)."""
    loss = token_cross_entropy(outputs, labels, num_items_in_batch)
    if outputs.logits.requires_grad:
        TRAINING_CALLS[0] += 1
        if TRAINING_CALLS[0] >= 6:
            return loss * float("nan")
    return loss
'''


def assert_same_losses(run_dir: Path, reference: ReferenceRun) -> None:
    expected, got = train_losses(reference.run_dir), train_losses(run_dir)
    assert sorted(got) == sorted(expected) == list(range(1, 13))
    for step in expected:
        assert math.isclose(got[step], expected[step], rel_tol=1e-6, abs_tol=1e-7), step


def assert_nothing_saved_after_checkpoint_4(run_dir: Path, summary: dict[str, Any]) -> None:
    """A run stopped by a NaN at step 6: checkpoint 4, with finite weights, is its last; neither checkpoint 8 nor
    an adapter was written."""
    import torch
    from safetensors.torch import load_file

    assert latest_complete(run_dir / "checkpoints").name == "checkpoint-4"
    assert not (run_dir / "checkpoints" / "checkpoint-8").exists() and summary["adapter_path"] is None
    weights = load_file(run_dir / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
        write_recipe: Callable[..., Path], prepare: Callable[..., Any], fake_data: None, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from forge.train.run import exit_code, run_recipe

    module = tmp_path / "nan_loss.py"
    module.write_text(NAN_LOSS)
    resolved, plan = prepare(write_recipe("nan"), "training.loss=nan_from_step_6",
                             f"training.loss_module={module}")
    summary = run_recipe(resolved, plan, progress=True)
    run_dir = Path(plan.run_dir)
    assert summary["status"] == "failed" and exit_code(summary) == 1 and summary["steps"] == 6
    assert "step 6" in summary["error"] and "NaN" in summary["error"] and "checkpoint-4" in summary["error"]
    assert "forge: training stopped at step 6" in capsys.readouterr().out
    assert read_summary(run_dir)["status"] == "failed"
    assert_nothing_saved_after_checkpoint_4(run_dir, summary)
    last = [r for r in read_metrics(run_dir) if r["kind"] == "train"][-1]
    assert last["step"] == 6 and math.isnan(last["loss"])


def test_a_nan_found_a_step_late_still_writes_nothing_after_it(
        write_recipe: Callable[..., Path], prepare: Callable[..., Any], fake_data: None, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard as it runs on a GPU (each step's norm checked at the next step), here on the CPU: the NaN of
    step 6 is found at step 7, whose update is skipped; checkpoint 8 is never written, nor an adapter."""
    import forge.train.callbacks as callbacks
    from forge.train.run import run_recipe

    monkeypatch.setattr(callbacks, "_read_later", lambda norm: True)
    module = tmp_path / "nan_loss_late.py"  # a loss of its own: the other test's counts its micro-batches
    module.write_text(NAN_LOSS.replace("nan_from_step_6", "late_nan_from_step_6"))
    resolved, plan = prepare(write_recipe("late"), "training.loss=late_nan_from_step_6",
                             f"training.loss_module={module}", "training.logging_steps=100")
    summary = run_recipe(resolved, plan, progress=False)
    run_dir = Path(plan.run_dir)
    assert summary["status"] == "failed" and summary["steps"] == 7
    assert "step 6" in summary["error"] and "gradients became NaN" in summary["error"]
    assert_nothing_saved_after_checkpoint_4(run_dir, summary)
    assert [r["step"] for r in read_metrics(run_dir) if r["kind"] == "train"] == [1, 7]  # the failure is logged


def test_a_full_disk_mid_save_leaves_no_complete_looking_checkpoint(
        write_recipe: Callable[..., Path], prepare: Callable[..., Any], fake_data: None,
        monkeypatch: pytest.MonkeyPatch, reference_run: ReferenceRun) -> None:
    from transformers import Trainer

    from forge.train.run import run_recipe

    real_save = Trainer._save_rng_state

    def full_disk_at_step_8(self: Any, output_dir: str) -> None:
        if self.state.global_step == 8:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", full_disk_at_step_8)
    recipe = write_recipe("disk")
    resolved, plan = prepare(recipe)
    run_dir = Path(plan.run_dir)
    with pytest.raises(ForgeRuntimeError, match="disk filled up") as info:
        run_recipe(resolved, plan, progress=False)
    assert "checkpoint-4" in info.value.hint
    assert (run_dir / "checkpoints" / "checkpoint-8" / "adapter_model.safetensors").exists()
    assert not is_complete(run_dir / "checkpoints" / "checkpoint-8")
    assert latest_complete(run_dir / "checkpoints").name == "checkpoint-4"
    assert read_summary(run_dir)["status"] == "failed"

    monkeypatch.setattr(Trainer, "_save_rng_state", real_save)  # space freed: run again
    summary = run_resumed(prepare(recipe), 4)
    assert summary["status"] == "completed" and summary["resumed_from"].endswith("checkpoint-4")
    assert any("removed incomplete checkpoint checkpoint-8" in n for n in summary["notes"])
    assert_same_losses(run_dir, reference_run)


class SignalAtStep(TrainerCallback):
    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step + 1 == self.step:
            os.kill(os.getpid(), self.signum)  # arrives during step `self.step`


def test_sigterm_saves_a_checkpoint_and_stops_cleanly(write_recipe: Callable[..., Path], prepare: Callable[..., Any],
                                                      fake_data: None, reference_run: ReferenceRun) -> None:
    from forge.train.run import exit_code, run_recipe

    recipe = write_recipe("term")
    previous = signal.getsignal(signal.SIGTERM)
    summary = run_recipe(*prepare(recipe), progress=False, callbacks=[SignalAtStep(6, signal.SIGTERM)])
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored
    run_dir = Path(summary["run_dir"])
    assert summary["status"] == "interrupted" and exit_code(summary) == 143 and summary["steps"] == 6
    assert is_complete(run_dir / "checkpoints" / "checkpoint-6") and summary["adapter_path"] is None
    resumed = run_resumed(prepare(recipe), 6)
    assert resumed["status"] == "completed" and resumed["resumed_from"].endswith("checkpoint-6")
    assert_same_losses(run_dir, reference_run)


def test_sigint_exits_130(write_recipe: Callable[..., Path], prepare: Callable[..., Any], fake_data: None) -> None:
    from forge.train.run import exit_code, run_recipe

    summary = run_recipe(*prepare(write_recipe("int"), "training.max_steps=3"), progress=False,
                         callbacks=[SignalAtStep(2, signal.SIGINT)])
    assert summary["status"] == "interrupted" and exit_code(summary) == 130 and summary["steps"] == 2


def test_an_empty_dataset_is_the_data_layers_error(write_recipe: Callable[..., Path], prepare: Callable[..., Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import forge.train.run
    from forge.data.errors import DataError

    def empty(recipe: Any, tokenizer: Any = None, progress: bool = True) -> Any:
        raise DataError("no examples left after preprocessing", "loosen filter_quality")

    monkeypatch.setattr(forge.train.run, "load_data", empty)
    resolved, plan = prepare(write_recipe("empty"))
    with pytest.raises(DataError, match="no examples left"):
        forge.train.run.run_recipe(resolved, plan, progress=False)
    summary = read_summary(Path(plan.run_dir))
    assert summary["status"] == "failed" and "no examples left" in summary["error"]


def test_resume_always_needs_a_checkpoint(write_recipe: Callable[..., Path], prepare: Callable[..., Any]) -> None:
    from forge.train.run import run_recipe

    with pytest.raises(ForgeRuntimeError, match="no complete checkpoint"):
        run_recipe(*prepare(write_recipe("always")), resume="always", progress=False)
