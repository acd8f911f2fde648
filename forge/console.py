"""What Forge prints while it works, fit for where it goes: progress bars on a terminal, a plain line per
interval in a log that is not one (a batch job's log file gets no carriage returns), and the libraries' noise
that the user did not cause and cannot act on kept off the console.

Nothing here imports torch, transformers or mlflow: `quiet_libraries` only sets warning filters and the
environment variables those libraries read when they are imported later.
"""
from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

LOG_INTERVAL = 30.0  # seconds between two progress lines in a log that is not a terminal

# Warnings of pinned libraries about their own calls into each other (PEFT reads transformers' deprecated
# is_gradient_checkpointing): nothing a Forge user wrote causes them or can change them.
LIBRARY_WARNINGS = ((FutureWarning, r"`is_gradient_checkpointing` is deprecated"),)


def quiet_libraries() -> None:
    """Keep off the console what the user did not cause: the libraries' warnings above, MLflow's INFO lines
    (creating its tables, run links), and, where stderr is not a terminal, the libraries' own per-step bars
    (weights loading, dataset maps). Settings the user made in the environment are kept. Called once per
    process: by the CLI, and by the processes it starts (training ranks, serving workers)."""
    for category, message in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    if not is_terminal(sys.stderr):
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' bars follow the hub's switch
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def progress_bar(iterable: Iterable[Any] | None = None, *, file: TextIO | None = None, **kwargs: Any) -> Any:
    """A tqdm bar on a terminal; elsewhere a LineProgress with the same interface, which writes whole lines."""
    stream = file if file is not None else sys.stderr
    if is_terminal(stream):
        from tqdm.auto import tqdm

        return tqdm(iterable, file=stream, **kwargs)
    return LineProgress(iterable, file=stream, **kwargs)


class LineProgress:
    """The part of tqdm's interface Forge uses, for a log that is not a terminal: `desc: n/total unit (rate,
    postfix)` at most once an interval, and a last line on close when the bar is kept (leave) or has printed
    before. A bar that finishes within its first interval and is not kept prints nothing."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, desc: str = "", total: float | None = None,
                 unit: str = "it", initial: int = 0, disable: bool = False, leave: bool = True,
                 file: TextIO | None = None, interval: float = LOG_INTERVAL, **_tqdm_only: Any) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.desc, self.total, self.unit, self.n = desc, total, unit.strip() or "it", initial
        self.disable, self.leave, self.file, self.interval = disable, leave, file or sys.stderr, interval
        self.postfix = ""
        self._start = self._last = time.monotonic()
        self._initial = initial
        self._printed = False
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def update(self, n: float = 1) -> None:
        self.n += n
        now = time.monotonic()
        if not self.disable and now - self._last >= self.interval:
            self._last = now
            self._emit()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def write(self, text: str, file: TextIO | None = None) -> None:
        """A message between progress lines (tqdm.write prints to stdout by default, and so does this)."""
        print(text, file=file or sys.stdout, flush=True)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.disable and (self.leave or self._printed):
            self._emit(final=True)

    def line(self, final: bool = False) -> str:
        """The text of one progress line."""
        elapsed = time.monotonic() - self._start
        count = f"{self.n:g}/{self.total:g}" if self.total else f"{self.n:g}"
        done = self.n - self._initial
        parts = [f"{elapsed:.0f}s"]
        if elapsed > 0 and done > 0:
            rate = done / elapsed
            parts.append(f"{rate:.3g} {self.unit}/s" if rate >= 1 else f"{1 / rate:.3g} s/{self.unit}")
        if self.postfix:
            parts.append(self.postfix)
        prefix = f"{self.desc}: " if self.desc else ""
        return f"{prefix}{count} {self.unit}{' done' if final else ''} ({', '.join(parts)})"

    def _emit(self, final: bool = False) -> None:
        print(self.line(final), file=self.file, flush=True)
        self._printed = True
