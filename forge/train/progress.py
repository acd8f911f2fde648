"""What a person watches while a run trains: a one-line progress bar with loss, tokens/s and ETA (in place
of the trainer's own), and the plan summary printed before it starts.
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

from transformers import TrainerCallback


class ProgressBar(TrainerCallback):
    """A progress bar over optimizer steps (forge.console: tqdm on a terminal, lines in a log); evaluations
    print a line above it. With the run's FLOPs per token (forge/flops.py) and the device's peak, it shows
    the model FLOPs utilisation (MFU) too."""

    def __init__(self, flops: Any = None, peak_flops: float | None = None) -> None:
        self.flops, self.peak_flops = flops, peak_flops
        self.bar: Any = None
        self._t0 = 0.0
        self._tokens0 = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        from forge.console import progress_bar

        # a bar on a terminal; in a log that is not one (a batch job's), a line per interval
        self.bar = progress_bar(total=state.max_steps, initial=state.global_step, desc="training", unit="step",
                                dynamic_ncols=True, file=sys.stderr)
        self._t0, self._tokens0 = time.perf_counter(), state.num_input_tokens_seen or 0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if self.bar is None or not logs:
            return
        if "eval_loss" in logs:
            self.bar.write(f"step {state.global_step}: validation loss {logs['eval_loss']:.4f}")
        elif "loss" in logs:
            elapsed = time.perf_counter() - self._t0
            tokens = (state.num_input_tokens_seen or 0) - self._tokens0
            postfix = {"loss": f"{logs['loss']:.4f}"}
            if elapsed > 0 and tokens > 0:
                postfix["tok/s"] = f"{tokens / elapsed:,.0f}"
                mfu = self.flops.utilisation(tokens / elapsed, self.peak_flops)["mfu"] if self.flops else None
                if mfu:
                    postfix["MFU"] = f"{mfu:.0%}"
            self.bar.set_postfix(postfix, refresh=False)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.close()

    def close(self) -> None:
        """End the bar (also when training stops on an error, so that the error starts a line of its own)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def plan_summary(lines: list[tuple[str, str]], notes: list[str]) -> str:
    """The block printed before training: aligned `label  value` lines, then notes."""
    width = max((len(label) for label, _ in lines), default=0)
    text = [f"  {label.ljust(width)}  {value}" for label, value in lines]
    text += [f"  note: {note}" for note in notes]
    return "\n".join(text)


@contextlib.contextmanager
def quiet_library_bars() -> Iterator[None]:
    """Silence the per-step bars of datasets.map and weight loading while Forge prints its own output."""
    from datasets.utils import logging as datasets_logging
    from transformers.utils import logging as transformers_logging

    datasets_on = datasets_logging.is_progress_bar_enabled()
    transformers_on = transformers_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if datasets_on:
            datasets_logging.enable_progress_bar()
        if transformers_on:
            transformers_logging.enable_progress_bar()
