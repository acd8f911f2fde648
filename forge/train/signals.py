"""Ctrl-C and SIGTERM end a run cleanly: the current optimizer step finishes, a checkpoint is saved, the
summary says "interrupted", and the process exits 130 (SIGINT) or 143 (SIGTERM). A second signal while
that happens stops at once, as the signal normally would.
"""
from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

from transformers import TrainerCallback

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal(TrainerCallback):
    """Turns a caught signal into "save a checkpoint and stop" at the end of the current step."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.step: int | None = None

    def request_stop(self, signum: int) -> None:
        self.signal = signum

    @property
    def exit_code(self) -> int:
        return 128 + (self.signal or 0)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.step is None and _any_rank(self.signal is not None):
            self.signal = self.signal or signal.SIGTERM  # another rank was signalled: stop with it
            self.step = state.global_step
            control.should_save = True
            control.should_training_stop = True


@contextlib.contextmanager
def stop_on_signals(callback: StopOnSignal) -> Iterator[StopOnSignal]:
    """While the block runs, SIGINT/SIGTERM ask `callback` to stop; a repeated signal acts as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield callback  # signal handlers can only be set from the main thread
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}

    def handle(signum: int, frame: Any) -> None:
        if callback.signal is not None:  # second signal: give up on a clean stop
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        callback.request_stop(signum)
        print(f"\nforge: {signal.Signals(signum).name} received: saving a checkpoint after this step, then "
              "stopping (send it again to stop at once)", flush=True)

    for s in SIGNALS:
        signal.signal(s, handle)
    try:
        yield callback
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _any_rank(flag: bool) -> bool:
    """Whether any process of a multi-process run has the flag: every rank must stop at the same step, or
    the ones that go on wait forever in the next collective."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return flag
    import torch

    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())
