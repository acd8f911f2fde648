"""Files Forge writes (a run's summaries and markers, an evaluation report), written so that a crash never
leaves half of one: a temporary file in the same folder, flushed and fsync'd, then renamed over the target
(rename is atomic on POSIX filesystems), and the folder fsync'd; plus the readers that tolerate a torn last line.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from forge.file_modes import as_umask_allows


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in folder durable."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories
    finally:
        os.close(fd)


def write_text(path: Path, text: str) -> None:
    """Replace path with text, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        as_umask_allows(tmp)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_json(path: Path, data: Any) -> None:
    """Replace path with data as indented JSON, atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line in a single write, so a reader never sees half a line from a live run."""
    line = json.dumps(record, default=str, allow_nan=True) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()


def read_json(path: Path | str) -> dict[str, Any]:
    """A JSON object file (a summary), or {} when it is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a JSON-lines file; a torn last line (a kill mid-write) is skipped."""
    records = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def disk_full(error: BaseException, folder: Path, free_below: int = 16 * 2**20) -> bool:
    """Whether an error while writing to folder came from a full disk: ENOSPC, an error that says so in its text
    (safetensors'), or an error without errno (torch.save's "iostream error") while the folder's file system has
    almost no space left."""
    if isinstance(error, OSError) and error.errno is not None:
        return error.errno == errno.ENOSPC
    if "No space left on device" in str(error) or f"os error {errno.ENOSPC})" in str(error):  # safetensors (Rust)
        return True
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < free_below
