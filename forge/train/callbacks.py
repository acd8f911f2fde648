"""Trainer callbacks that make a run observable and safe: metrics to `metrics.jsonl` (and the tracker),
checkpoint completion markers, and a guard that stops on a NaN or infinite loss before it reaches a checkpoint.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

from transformers import TrainerCallback

from forge.model.report import memory_bytes
from forge.atomic import append_jsonl
from forge.train.checkpoints import write_marker

# Names in metrics.jsonl for what the trainer logs
RENAMES = {"train_loss": "train_loss_mean", "eval_runtime": "eval_seconds", "train_runtime": "train_seconds"}


class MetricsLog(TrainerCallback):
    """One JSON line per logging step (step, epoch, loss, learning rate, grad norm, tokens/s, memory) and per
    evaluation (eval_loss, eval_perplexity), also handed to `on_metrics` (the tracker)."""

    def __init__(self, path: Path, on_metrics: Callable[[dict[str, float], int], None] | None = None) -> None:
        self.path = Path(path)
        self.on_metrics = on_metrics
        self.eval_history: list[dict[str, float]] = []
        self._last_time = time.perf_counter()
        self._last_tokens = 0
        self._session_start = time.perf_counter()
        self._session_tokens = 0
        self.final = False  # set before the evaluation after training, to tell it apart in the file

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._last_time = self._session_start = time.perf_counter()
        self._last_tokens = self._session_tokens = state.num_input_tokens_seen or 0

    @property
    def tokens_per_second(self) -> float | None:
        return getattr(self, "_overall_tps", None)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = dict(logs or {})
        record: dict[str, Any] = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        if "eval_loss" in logs:
            record["kind"] = "final_eval" if self.final else "eval"
            loss = logs["eval_loss"]
            logs["eval_perplexity"] = math.exp(loss) if loss < 50 else math.inf
            self.eval_history.append({"step": state.global_step, "loss": loss,
                                      "perplexity": logs["eval_perplexity"]})
        elif "total_flos" in logs:  # the trainer's closing line
            record["kind"] = "end"
        else:
            record["kind"] = "train"
            now, tokens = time.perf_counter(), state.num_input_tokens_seen or 0
            if tokens > self._last_tokens and now > self._last_time:
                logs["tokens_per_second"] = (tokens - self._last_tokens) / (now - self._last_time)
            if tokens > self._session_tokens and now > self._session_start:
                self._overall_tps = (tokens - self._session_tokens) / (now - self._session_start)
            self._last_time, self._last_tokens = now, tokens
            logs["memory_bytes"] = memory_bytes()
        for key, value in logs.items():
            if key not in ("epoch", "step"):
                record[RENAMES.get(key, key)] = value
        append_jsonl(self.path, record)
        if self.on_metrics is not None and record["kind"] != "end":
            numbers = {k: float(v) for k, v in record.items()
                       if isinstance(v, (int, float)) and k not in ("step", "kind") and math.isfinite(v)}
            self.on_metrics(numbers, state.global_step)


class CheckpointMarker(TrainerCallback):
    """Marks each checkpoint complete once the trainer has written all of it: under several processes, once
    every rank has written its part (a barrier), by rank 0 alone."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.barrier()
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            write_marker(folder, state.global_step)


class NonFiniteGuard(TrainerCallback):
    """Stops training at the first NaN/inf gradient or loss, and never writes a checkpoint after it, so the last
    checkpoint stays the last good one.

    Gradients are checked before each optimizer step, through the norm the trainer computed for clipping (or one
    of the guard's own), except under fp16 loss scaling, where an overflowing gradient is routine (the scaler
    skips the step); there the logged loss is checked instead. A norm on the CPU is checked at once and a bad
    step's update skipped. A norm on the GPU travels to the host without a wait (a non-blocking copy and an
    event) and is checked at the next step, where its copy has long arrived, so the host never stops to wait for
    the GPU; a step that logs, evaluates, saves or ends the run waits for its own norm first, so no checkpoint,
    log or final adapter comes after a bad step. A bad step found a step late has already made its update, in
    memory only: the run fails without saving anything more.
    """

    def __init__(self, check_gradients: bool = True, norm: Callable[[], Any] | None = None) -> None:
        self.check_gradients = check_gradients
        self.norm = norm  # the gradient norm the trainer computed for this step (for clipping), if any
        self.failed_step: int | None = None
        self.reason = ""
        self.pending: tuple[int, Reading] | None = None  # (step, its norm on the way to the host)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not self.check_gradients or model is None or self.failed_step is not None:
            return
        self.settle()  # the last step's norm: arrived long ago, unless the host runs more than a step ahead
        if self.failed_step is None:
            total = self.norm() if self.norm is not None else None
            if not _on_gpu(total) and _as_float(total) is None:
                import torch

                grads = [p.grad for p in model.parameters() if p.grad is not None]
                if not grads:
                    return
                # one norm over every gradient: NaN or inf anywhere makes it non-finite
                total = torch.nn.utils.get_total_norm(grads, error_if_nonfinite=False)
            self.pending = (state.global_step + 1, Reading(total))
            if not _read_later(total):
                self.settle()
        if self.failed_step is not None:
            for p in model.parameters():
                p.grad = None  # the optimizer skips parameters without gradients

    def settle(self) -> None:
        """Check the norm on its way, waiting for its copy if it has not arrived."""
        if self.pending is not None:
            (step, reading), self.pending = self.pending, None
            if not math.isfinite(reading.value()):
                self._fail(step, "gradients became NaN or infinite")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.pending is not None and (control.should_save or control.should_log or control.should_evaluate or
                                         control.should_training_stop or state.global_step >= state.max_steps):
            self.settle()
        if self.failed_step is not None:
            control.should_training_stop = True
            control.should_save = False
            control.should_evaluate = False
            control.should_log = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.settle()

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        for key in ("loss", "eval_loss"):
            value = (logs or {}).get(key)
            if isinstance(value, float) and not math.isfinite(value) and self.failed_step is None:
                self._fail(state.global_step, f"{'validation' if key == 'eval_loss' else 'training'} loss is {value}")
                control.should_training_stop = True
                control.should_save = False

    def _fail(self, step: int, reason: str) -> None:
        if self.failed_step is None or step < self.failed_step:
            self.failed_step, self.reason = step, reason


class Reading:
    """A one-element value on its way to the host: from the GPU, a non-blocking copy into pinned memory and an
    event marking its arrival (reading it waits for that event only, not for the work queued after it)."""

    def __init__(self, value: Any) -> None:
        self.number, self.host, self.event = None, None, None
        if not _on_gpu(value):
            self.number = _as_float(value)
        else:
            import torch

            self.host = torch.empty((), dtype=value.dtype, pin_memory=True)
            self.host.copy_(value.detach().reshape(()), non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()

    def value(self) -> float:
        if self.event is not None:
            self.event.synchronize()
            self.number, self.event = float(self.host), None
        return 0.0 if self.number is None else self.number  # a value that cannot be read is no failure


def _on_gpu(value: Any) -> bool:
    return getattr(value, "is_cuda", False) is True and value.numel() == 1


def _read_later(norm: Any) -> bool:
    """Whether the guard checks this step's norm a step later: a norm on the GPU (reading it now would wait)."""
    return _on_gpu(norm)


def _as_float(value: Any) -> float | None:
    """A norm (a number or a one-element tensor) as a float; None for anything else."""
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value.detach().float()) if value is not None and value.numel() == 1 else None
    except (AttributeError, RuntimeError, TypeError):
        return None
