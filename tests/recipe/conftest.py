from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable

import pytest

MINIMAL = """
data:
  sources:
    - path: papers.json
model:
  name_or_path: forge:tiny-llama
"""


@pytest.fixture(name="MINIMAL")
def minimal_text() -> str:
    """The smallest valid recipe body."""
    return MINIMAL


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a recipe file (dedented) under tmp_path and return its path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return _write


@pytest.fixture
def minimal(write: Callable[[str, str], Path]) -> Path:
    """The minimal recipe beside the papers file it names (`forge validate` checks that data paths exist)."""
    path = write("minimal.yaml", MINIMAL)
    (path.parent / "papers.json").write_text("[]", encoding="utf-8")
    return path
