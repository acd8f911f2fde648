"""Atomic files: the one writer that run files and evaluation reports go through."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from forge.atomic import append_jsonl, read_jsonl, write_json, write_text


def test_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "summary.json"
    write_json(target, {"status": "running"})
    write_json(target, {"status": "completed", "steps": 3})
    assert target.read_text().startswith("{") and '"completed"' in target.read_text()
    assert os.listdir(target.parent) == ["summary.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "recipe.yaml"
    write_text(target, "old")

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        write_text(target, "new")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["recipe.yaml"]


def test_a_crash_in_the_middle_of_the_write_keeps_the_old_file(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.json"
    write_text(target, '{"old": true}\n')
    synced: list[int] = []
    real_fsync = os.fsync

    def crash(fd: int) -> None:  # the new text is written (flushed) but the process dies before the rename
        synced.append(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        write_text(target, '{"new": true, "padding": "%s"}\n' % ("x" * 100_000))
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert synced, "the writer fsyncs the file before renaming it"
    assert target.read_text() == '{"old": true}\n' and os.listdir(tmp_path) == ["report.json"]


def test_jsonl_reader_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"step": 1, "loss": float("nan")})
    append_jsonl(path, {"step": 2, "loss": 1.5})
    with open(path, "a") as f:
        f.write('{"step": 3, "lo')
    records = read_jsonl(path)
    assert [r["step"] for r in records] == [1, 2] and records[0]["loss"] != records[0]["loss"]
    assert read_jsonl(tmp_path / "missing.jsonl") == []
