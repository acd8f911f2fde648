"""Parameter and memory accounting: what a model trains, what it holds, and how much memory the run peaked at.

On a GPU memory means CUDA allocated bytes; on the CPU it is the process's resident set (peak: max RSS).
"""
from __future__ import annotations

import os
import resource
import sys
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ParamCount:
    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "trainable_percent": round(self.percent, 4)}

    def describe(self) -> str:
        return f"{human_count(self.trainable)} trainable of {human_count(self.total)} parameters ({self.percent:.2f}%)"


def count_parameters(model: Any) -> ParamCount:
    """Trainable and total parameters; 4-bit packed weights count as the parameters they hold, not their bytes."""
    trainable = total = 0
    for param in model.parameters():
        n = param.numel()
        if type(param).__name__ == "Params4bit":  # two 4-bit values per stored byte
            n *= 2 * getattr(getattr(param, "quant_storage", None), "itemsize", 1)
        total += n
        if param.requires_grad:
            trainable += n
    return ParamCount(trainable, total)


def human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _cuda() -> Any | None:
    torch = sys.modules.get("torch")
    return torch.cuda if torch is not None and torch.cuda.is_available() else None


def memory_bytes() -> int:
    """Memory in use now: CUDA allocated bytes on a GPU, resident set size on the CPU."""
    cuda = _cuda()
    if cuda is not None:
        return int(cuda.memory_allocated())
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_memory_bytes()


def peak_reserved_bytes() -> int | None:
    """Peak memory the CUDA caching allocator held (what nvidia-smi sees); None on the CPU."""
    cuda = _cuda()
    return int(cuda.max_memory_reserved()) if cuda is not None else None


def peak_memory_bytes() -> int:
    """Peak memory of the run: CUDA max allocated on a GPU, the process's peak RSS on the CPU."""
    cuda = _cuda()
    if cuda is not None:
        return int(cuda.max_memory_allocated())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux
    # Linux updates ru_maxrss lazily (its high-water mark trails the resident set by a few pages): never below now
    try:
        with open("/proc/self/statm") as f:
            return max(peak, int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return peak
