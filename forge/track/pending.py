"""What a run would have logged while MLflow was away: one JSON line per call in `<run_dir>/mlflow_pending.jsonl`,
and how many of them have been sent since in `mlflow_pending.sent`, so that a replay that stops half-way (the
server went away again, the process was killed) picks up where it stopped and never sends a line twice.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

PENDING_FILE = "mlflow_pending.jsonl"
SENT_FILE = "mlflow_pending.sent"


class PendingLog:
    """An append-only queue of tracking calls on disk, with a persisted count of the lines already sent."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / PENDING_FILE
        self.sent_path = Path(run_dir) / SENT_FILE

    def append(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def entries(self) -> list[dict[str, Any]]:
        """Every complete line; a torn last line (a crash mid-write) is skipped."""
        out = []
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    @property
    def sent(self) -> int:
        try:
            return int(json.loads(self.sent_path.read_text(encoding="utf-8"))["sent"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def unsent(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(index, entry) of the lines not sent yet, in the order they were written."""
        entries = self.entries()
        for index in range(self.sent, len(entries)):
            yield index, entries[index]

    def mark_sent(self, count: int) -> None:
        tmp = self.sent_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"sent": count}), encoding="utf-8")
        os.replace(tmp, self.sent_path)

    def has_unsent(self) -> bool:
        return self.path.exists() and len(self.entries()) > self.sent

    def clear(self) -> None:
        """Everything was sent: the queue goes (MLflow and metrics.jsonl hold the data)."""
        for path in (self.path, self.sent_path):
            path.unlink(missing_ok=True)
