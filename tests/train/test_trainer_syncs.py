"""The trainer's per-step metrics kept on the device until logged: the same numbers as TRL's own path, which
reads each one back at every micro-batch."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

KEYS = ("loss", "entropy", "mean_token_accuracy", "num_tokens", "grad_norm")


def _run(tmp_path: Path, name: str, texts: list[str], model: Path, overrides: list[str]) -> tuple[dict, list[dict]]:
    import forge.train.run
    from harness import prepare, read_metrics, write_recipe

    recipe = write_recipe(tmp_path / name, texts, model, name=name)
    resolved, plan = prepare(recipe, "training.max_steps=4", "training.save_steps=2", "training.logging_steps=2",
                             "training.gradient_accumulation_steps=2", "training.micro_batch_size=4",
                             "training.eval_steps=2", *overrides)
    summary = forge.train.run.run_recipe(resolved, plan, progress=False)
    assert summary["status"] == "completed", summary.get("error")
    return summary, read_metrics(Path(summary["run_dir"]))


@pytest.mark.parametrize("padding_free", ["false", "true"])
def test_pending_metrics_log_what_trls_own_path_logs(tmp_path: Path, tiny_llama_dir: Path,
                                                     genomics_examples: list[str], padding_free: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import forge.train.run
    import forge.train.trainer
    from harness import fake_bundle

    monkeypatch.setattr(forge.train.run, "load_data", fake_bundle)
    overrides = [f"training.speed.padding_free={padding_free}"]
    counted = []
    flop_parameters = forge.train.trainer._flop_parameters
    monkeypatch.setattr(forge.train.trainer, "_flop_parameters",
                        lambda model: counted.append(1) or flop_parameters(model))
    ours, ours_lines = _run(tmp_path, "pending", genomics_examples, tiny_llama_dir, overrides)
    assert len(counted) == 1  # the parameters counted once for the FLOPs, not at each of the 8 micro-batches
    # TRL's and transformers' own paths: every metric read back at every micro-batch, the parameters counted for
    # the FLOPs at each, the gradients clipped over model.parameters()
    from transformers import Trainer

    class Theirs(forge.train.trainer.ForgeSFTTrainer):
        def floating_point_ops(self, inputs):
            return Trainer.floating_point_ops(self, inputs)

        def _clip_grad_norm(self, model):
            return Trainer._clip_grad_norm(self, model)

    monkeypatch.setattr(forge.train.trainer, "ForgeSFTTrainer", Theirs)
    monkeypatch.setattr(forge.train.trainer, "_plain_nll", lambda trainer: False)
    monkeypatch.setattr(forge.train.trainer, "_input_tokens", lambda trainer, inputs: None)
    theirs, their_lines = _run(tmp_path, "trl", genomics_examples, tiny_llama_dir, overrides)

    def by_kind(lines: list[dict], kind: str) -> list[dict]:
        return [r for r in lines if r.get("kind") == kind]

    train, reference = by_kind(ours_lines, "train"), by_kind(their_lines, "train")
    assert [r["step"] for r in train] == [r["step"] for r in reference] == [1, 2, 4]  # the first step, then every 2
    for mine, trl in zip(train, reference):
        for key in KEYS:
            assert mine[key] == pytest.approx(trl[key], rel=1e-5), (key, mine[key], trl[key])
        assert 0 < mine["mean_token_accuracy"] < 1 and mine["entropy"] > 0
    # tokens seen: counted once per micro-batch, read back at the logging steps and at the end
    assert ours["tokens_seen"] == theirs["tokens_seen"] > 0
    assert train[-1]["num_tokens"] == reference[-1]["num_tokens"] > train[0]["num_tokens"]
    evals, eval_reference = by_kind(ours_lines, "eval"), by_kind(their_lines, "eval")
    assert len(evals) == len(eval_reference) >= 2
    for mine, trl in zip(evals, eval_reference):
        for key in ("eval_loss", "eval_entropy", "eval_mean_token_accuracy"):
            assert mine[key] == pytest.approx(trl[key], rel=1e-5), (key, mine[key], trl[key])

    def state_at(summary: dict, step: int) -> dict:
        state = Path(summary["run_dir"]) / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json"
        return json.loads(state.read_text())

    # a checkpoint's trainer state holds the tokens seen up to it, as with the trainer's own count, and the FLOPs
    assert state_at(ours, 2)["num_input_tokens_seen"] == state_at(theirs, 2)["num_input_tokens_seen"] > 0
    assert state_at(ours, 4)["total_flos"] == state_at(theirs, 4)["total_flos"] > 0


def test_batches_from_worker_processes_train_like_batches_made_in_the_main_process(
        tmp_path: Path, tiny_llama_dir: Path, genomics_examples: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import forge.train.run
    from harness import fake_bundle

    monkeypatch.setattr(forge.train.run, "load_data", fake_bundle)
    main, main_lines = _run(tmp_path, "main", genomics_examples, tiny_llama_dir, ["training.dataloader_workers=0"])
    workers, worker_lines = _run(tmp_path, "workers", genomics_examples, tiny_llama_dir,
                                 ["training.dataloader_workers=2"])
    losses = [[r["loss"] for r in lines if r.get("kind") == "train"] for lines in (main_lines, worker_lines)]
    assert len(losses[0]) == 3 and losses[0] == pytest.approx(losses[1], rel=1e-5)  # the same batches, in order
    assert main["tokens_seen"] == workers["tokens_seen"] > 0


def test_the_guard_checks_the_trainers_norm_instead_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from transformers import TrainerControl, TrainerState

    from forge.train.callbacks import NonFiniteGuard

    model = torch.nn.Linear(3, 2)
    model(torch.ones(1, 3)).sum().backward()

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the guard computed its own norm")

    monkeypatch.setattr(torch.nn.utils, "get_total_norm", no_second_pass)
    state, control = TrainerState(), TrainerControl()
    state.global_step = 4
    finite = NonFiniteGuard(norm=lambda: torch.tensor(2.5))
    finite.on_pre_optimizer_step(None, state, control, model=model)
    assert finite.failed_step is None and model.weight.grad is not None
    broken = NonFiniteGuard(norm=lambda: torch.tensor(float("inf")))
    broken.on_pre_optimizer_step(None, state, control, model=model)
    assert broken.failed_step == 5 and "NaN or infinite" in broken.reason
    assert model.weight.grad is None and model.bias.grad is None  # the optimizer skips this update
    monkeypatch.undo()
    # no norm from the trainer (an encoder's Trainer, DeepSpeed before its first step): the guard computes it
    model(torch.ones(1, 3)).sum().backward()
    model.bias.grad[0] = float("nan")
    own = NonFiniteGuard(norm=lambda: None)
    own.on_pre_optimizer_step(None, state, control, model=model)
    assert own.failed_step == 5


def test_a_norm_read_a_step_later_is_checked_before_any_save_log_or_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard's reading on a GPU, decided here for CPU norms: a bad norm is not read at its own step, but at the
    next one (whose update it skips), or at once when its own step saves, logs, evaluates or ends the run."""
    import torch
    from transformers import TrainerControl, TrainerState

    import forge.train.callbacks as callbacks

    monkeypatch.setattr(callbacks, "_read_later", lambda norm: True)
    model = torch.nn.Linear(3, 2)
    state, control = TrainerState(), TrainerControl()
    state.global_step, state.max_steps = 4, 10

    def step(guard: callbacks.NonFiniteGuard) -> None:
        model(torch.ones(1, 3)).sum().backward()
        guard.on_pre_optimizer_step(None, state, control, model=model)
        state.global_step += 1  # as the trainer counts the step after its update

    late = callbacks.NonFiniteGuard(norm=lambda: torch.tensor(float("nan")))
    step(late)  # step 5: its NaN norm is on its way
    assert late.failed_step is None and model.weight.grad is not None
    late.on_step_end(None, state, control)
    assert late.failed_step is None and not control.should_training_stop  # nothing to save or log: not read yet
    late.norm = lambda: torch.tensor(1.0)
    step(late)  # step 6 reads step 5's
    assert late.failed_step == 5 and model.weight.grad is None  # step 6's update skipped
    for flag in ("should_save", "should_log", "should_evaluate", "should_training_stop", None):
        state.global_step, control = 4 if flag else 9, TrainerControl()
        if flag:
            setattr(control, flag, True)
        guard = callbacks.NonFiniteGuard(norm=lambda: torch.tensor(float("inf")))
        step(guard)
        guard.on_step_end(None, state, control)
        assert guard.failed_step == state.global_step and control.should_training_stop, flag
        assert not control.should_save and control.should_log, flag
    model.zero_grad()
    fine = callbacks.NonFiniteGuard(norm=lambda: torch.tensor(3.0))
    state.global_step, control = 4, TrainerControl(should_save=True)
    step(fine)
    fine.on_step_end(None, state, control)
    assert fine.failed_step is None and control.should_save and fine.pending is None


def test_a_run_that_logs_rarely_reads_its_pending_metrics_back_in_bounded_batches(
        tmp_path: Path, tiny_llama_dir: Path, genomics_examples: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import forge.train.run
    import forge.train.trainer
    from harness import fake_bundle, prepare, write_recipe

    monkeypatch.setattr(forge.train.run, "load_data", fake_bundle)
    monkeypatch.setattr(forge.train.trainer, "PENDING_LIMIT", 3)
    held: list[int] = []
    settle = forge.train.trainer._settle

    def watching(trainer):
        held.append(len(trainer._forge_pending["train"]))
        settle(trainer)

    monkeypatch.setattr(forge.train.trainer, "_settle", watching)
    recipe = write_recipe(tmp_path / "rare", genomics_examples, tiny_llama_dir, name="rare")
    resolved, plan = prepare(recipe, "training.max_steps=8", "training.logging_steps=100", "training.save_steps=100",
                             "data.split.validation=0.0")
    summary = forge.train.run.run_recipe(resolved, plan, progress=False)
    assert summary["status"] == "completed", summary.get("error")
    assert max(held) <= 3  # never more than the limit waiting
    assert summary["tokens_seen"] > 0
