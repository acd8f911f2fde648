"""The private transformers/TRL methods ForgeSFTTrainer overrides or relies on, pinned: when a library upgrade
changes one (its signature, its body or the training loop's call to it), these tests fail and say what to re-check
in forge/train/trainer.py, instead of the override silently doing the wrong thing."""
from __future__ import annotations

import hashlib
import inspect
import json
import textwrap
from pathlib import Path

import pytest

# name: (signature, SHA-256 of the dedented source, first 16 hex digits), as read in transformers 5.24.0
PRIVATE_TRAINER_METHODS = {
    "_track_num_input_tokens": ("(self, inputs)", "0b5c39dfbe2fb7d1"),
    "_clip_grad_norm": ("(self, model)", "df0a0246dbcb0b20"),
    "_get_grad_norm": ("(self, model, grad_norm=None)", "27e2667f3741dab8"),
    "_has_mixed_mesh_grads": ("(self, model) -> bool", "8fc674b38d1640c6"),
}
# what each override assumes of the training loop (Trainer._run_epoch): called once per micro-batch / sync step
LOOP_CALLS = ("self._track_num_input_tokens(inputs)", "grad_norm = self._clip_grad_norm(model)",
              "grad_norm = self._get_grad_norm(model, grad_norm=grad_norm)")
RECHECK = ("re-read the new source under .venv/lib/python3.11/site-packages/transformers/trainer.py, check that "
           "ForgeSFTTrainer.{name} in forge/train/trainer.py still replaces it faithfully (or that a public hook now "
           "does the job), then update PRIVATE_TRAINER_METHODS in this test")


def _digest(function: object) -> str:
    return hashlib.sha256(textwrap.dedent(inspect.getsource(function)).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(PRIVATE_TRAINER_METHODS))
def test_the_private_trainer_methods_forge_overrides_are_the_ones_it_was_written_for(name: str) -> None:
    from transformers import Trainer
    from trl import SFTTrainer

    from forge.train.trainer import ForgeSFTTrainer

    signature, digest = PRIVATE_TRAINER_METHODS[name]
    method = getattr(Trainer, name, None)
    assert method is not None, f"transformers' Trainer no longer has {name}: " + RECHECK.format(name=name)
    assert str(inspect.signature(method)) == signature, (
        f"Trainer.{name} changed its signature to {inspect.signature(method)}: " + RECHECK.format(name=name))
    assert _digest(method) == digest, f"Trainer.{name} changed: " + RECHECK.format(name=name)
    # TRL's SFTTrainer sits between: an override of its own would be skipped by ForgeSFTTrainer's super() calls
    assert name not in SFTTrainer.__dict__, f"TRL's SFTTrainer now overrides {name}: " + RECHECK.format(name=name)
    if name != "_has_mixed_mesh_grads":  # called, not overridden
        assert name in ForgeSFTTrainer.__dict__


def test_the_training_loop_still_calls_the_overridden_methods() -> None:
    from transformers import Trainer

    loop = inspect.getsource(Trainer._run_epoch)
    for call in LOOP_CALLS:
        assert loop.count(call) == 1, f"Trainer._run_epoch no longer calls `{call}` once: " + RECHECK.format(
            name=call.split("self.")[1].split("(")[0])
    # the save decision is the callbacks' (on_step_end), before _maybe_log_save_evaluate writes the checkpoint:
    # SettleBeforeSave relies on that order
    assert loop.index("on_step_end(") < loop.index("self._maybe_log_save_evaluate("), \
        "the training loop now saves before the callbacks' on_step_end: re-check SettleBeforeSave"


def test_the_trl_metric_lists_the_pending_metrics_settle_into_are_still_there() -> None:
    """_settle (forge/train/trainer.py) appends to TRL's per-mode metric lists and token count, as TRL's own
    compute_loss does; a rename there would make the pending metrics vanish from the logs."""
    from trl import SFTTrainer

    loss, log = inspect.getsource(SFTTrainer.compute_loss), inspect.getsource(SFTTrainer.log)
    for needed in ('self._metrics[mode]["entropy"].append', 'self._metrics[mode]["mean_token_accuracy"].append',
                   "self._total_train_tokens +=", "// self._tp_size",
                   'self._metrics[mode]["num_tokens"] = [self._total_train_tokens]'):
        assert needed in loss, f"TRL's SFTTrainer.compute_loss no longer has `{needed}`: re-check _settle and " \
                               "_loss_with_pending_metrics in forge/train/trainer.py"
    assert "self._metrics[mode].items()" in log, "TRL's SFTTrainer.log no longer averages self._metrics[mode]"


def test_a_checkpoint_saved_between_logging_steps_holds_the_tokens_seen_up_to_it(
        tmp_path: Path, tiny_llama_dir: Path, genomics_examples: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The tokens seen wait on the device until a logging step; a save at a step that does not log reads them back
    first (SettleBeforeSave), so trainer_state.json holds the same count as transformers' own, per-step one."""
    import forge.train.run
    import forge.train.trainer
    from harness import fake_bundle, prepare, write_recipe

    monkeypatch.setattr(forge.train.run, "load_data", fake_bundle)

    def tokens_at_checkpoint_2(name: str) -> int:
        recipe = write_recipe(tmp_path / name, genomics_examples, tiny_llama_dir, name=name)
        resolved, plan = prepare(recipe, "training.max_steps=3", "training.save_steps=2", "training.logging_steps=100",
                                 "training.micro_batch_size=2", "data.split.validation=0.0")
        summary = forge.train.run.run_recipe(resolved, plan, progress=False)
        assert summary["status"] == "completed", summary.get("error")
        state = Path(summary["run_dir"]) / "checkpoints" / "checkpoint-2" / "trainer_state.json"
        return int(json.loads(state.read_text())["num_input_tokens_seen"])

    ours = tokens_at_checkpoint_2("pending")
    monkeypatch.setattr(forge.train.trainer, "_input_tokens", lambda trainer, inputs: None)  # transformers counts
    assert ours == tokens_at_checkpoint_2("counted") > 0
    monkeypatch.undo()
    monkeypatch.setattr(forge.train.run, "load_data", fake_bundle)
    monkeypatch.setattr(forge.train.trainer.SettleBeforeSave, "on_step_end", lambda self, *a, **k: None)
    assert tokens_at_checkpoint_2("unsettled") < ours  # without it, the count in the checkpoint lags
