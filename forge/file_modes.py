"""The modes of the files and folders Forge creates through mkstemp/mkdtemp (for atomic writes and staging
folders): those are private (0600/0700) by design, while a run's outputs should be as readable as the umask
allows, like any file written with open(), so that colleagues can read a shared runs folder.
"""
from __future__ import annotations

import os
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read from /proc where it can be (setting it to read it races with other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_umask_allows(path: Path | str, directory: bool = False) -> None:
    """Give a file or folder that mkstemp/mkdtemp made (0600/0700, private by design) the mode an ordinary
    open() or mkdir() would have given it, so a shared runs folder stays readable to whom the umask allows."""
    os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())
