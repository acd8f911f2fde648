"""Memory sizes as a recipe writes them (`16GiB`, `800MB`, `81559MiB`), read into bytes without torch."""
from __future__ import annotations

import re

UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
SIZE_PATTERN = r"^\s*[0-9]+(\.[0-9]+)?\s*([KkMmGgTt][Ii]?)?[Bb]\s*$"
GIB = 2**30


def parse_size(text: str) -> int:
    """Bytes in `text`, a number and a unit (B, KB, MB, GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of
    1024): `16GiB` is 17,179,869,184. Raises ValueError for anything else."""
    match = re.match(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]+)\s*$", str(text))
    unit = match.group(2).lower() if match else ""
    if not match or unit not in UNITS:
        raise ValueError(f"{text!r} is not a size (expected a number and a unit, such as 16GiB or 800MB)")
    return int(float(match.group(1)) * UNITS[unit])


def gib(n: float | None) -> str:
    """`n` bytes as GiB with one decimal (`6.9 GiB`); '-' for None."""
    return "-" if n is None else f"{n / GIB:.1f} GiB"
