"""Run files get the mode the umask allows (mkstemp and mkdtemp alone would make them 0600 and 0700)."""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from forge.atomic import write_json, write_text
from forge.file_modes import current_umask


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_reads_the_process_umask(umask: int) -> None:
    assert current_umask() == umask


def test_atomic_run_files_have_the_mode_open_would_give(tmp_path: Path, umask: int) -> None:
    write_json(tmp_path / "summary.json", {"status": "completed"})
    write_text(tmp_path / "recipe.yaml", "run: {}\n")
    with open(tmp_path / "plain.txt", "w") as f:  # what an ordinary write gets
        f.write("x")
    expected = mode(tmp_path / "plain.txt")
    assert expected == 0o666 & ~umask
    for name in ("summary.json", "recipe.yaml"):
        assert mode(tmp_path / name) == expected, name


def test_the_final_adapter_folder_has_the_mode_mkdir_would_give(tmp_path: Path, umask: int) -> None:
    from forge.train.run import _save_final

    class Trainer:
        def save_model(self, folder: str) -> None:
            with open(Path(folder) / "adapter_config.json", "w") as f:
                f.write("{}")

    trainer: Any = Trainer()
    adapter = _save_final(trainer, tmp_path / "adapter")
    (tmp_path / "plain").mkdir()
    assert mode(adapter) == mode(tmp_path / "plain") == 0o777 & ~umask
    assert mode(adapter / "adapter_config.json") == 0o666 & ~umask
