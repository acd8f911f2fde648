"""Run a recipe in a child process, the way `forge run` would, for tests that kill or signal it.

    python child_run.py RECIPE [--resume auto] [--fake-data] [--kill-at-step N] [--kill-in-save-at-step N]
                               [--step-seconds S]

--kill-at-step sends SIGKILL to itself at the end of step N (mid-training, nothing saved after the last
checkpoint); --kill-in-save-at-step does it after the trainer wrote checkpoint N but before Forge marked it
complete; --step-seconds slows each step so a parent can signal the run while it trains.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from transformers import TrainerCallback


class Hooks(TrainerCallback):
    def __init__(self, kill_at: int | None, step_seconds: float) -> None:
        self.kill_at, self.step_seconds = kill_at, step_seconds

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if self.step_seconds:
            time.sleep(self.step_seconds)
        if self.kill_at is not None and state.global_step == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("recipe")
    parser.add_argument("--resume", default="auto")
    parser.add_argument("--fake-data", action="store_true")
    parser.add_argument("--kill-at-step", type=int)
    parser.add_argument("--kill-in-save-at-step", type=int)
    parser.add_argument("--step-seconds", type=float, default=0.0)
    args = parser.parse_args()

    import forge.train.callbacks
    import forge.train.run
    from forge.plan import compile_plan
    from forge.recipe.validate import resolve

    if args.fake_data:
        from harness import fake_bundle

        forge.train.run.load_data = fake_bundle
    if args.kill_in_save_at_step is not None:
        real_marker = forge.train.callbacks.write_marker

        def marker_or_die(folder, step):  # type: ignore[no-untyped-def]
            if step == args.kill_in_save_at_step:
                os.kill(os.getpid(), signal.SIGKILL)
            real_marker(folder, step)

        forge.train.callbacks.write_marker = marker_or_die
    resolved = resolve(args.recipe)
    summary = forge.train.run.run_recipe(resolved, compile_plan(resolved.recipe), resume=args.resume,
                                         progress=False, callbacks=[Hooks(args.kill_at_step, args.step_seconds)])
    return forge.train.run.exit_code(summary)


if __name__ == "__main__":
    sys.exit(main())
