"""Every error line Forge prints points to its entry in docs/troubleshooting.md, and every entry it points to
exists (anchors as GitHub makes them from the headings)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import pytest

from forge.cli import main
from forge.errors import _PACKAGE_DOCS, ForgeError, doc_anchor, see_docs

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "troubleshooting.md"
ANCHOR_IN_CODE = re.compile(r"""\bdoc\s*=\s*["']([a-z0-9-]+)["']|see_docs\(["']([a-z0-9-]+)["']\)""")


def doc_anchors() -> set[str]:
    """GitHub's anchors of the headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{2,3} (.+)$", DOC.read_text(encoding="utf-8"), flags=re.M)
    return {re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def code_anchors() -> dict[str, list[str]]:
    """anchor -> the files that use it."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "forge").rglob("*.py")):
        for match in ANCHOR_IN_CODE.finditer(path.read_text(encoding="utf-8")):
            found.setdefault(match.group(1) or match.group(2), []).append(str(path.relative_to(ROOT)))
    for anchor in _PACKAGE_DOCS.values():
        found.setdefault(anchor, []).append("forge/errors.py")
    return found


def test_every_anchor_the_code_uses_is_an_entry_of_the_troubleshooting_page() -> None:
    entries, used = doc_anchors(), code_anchors()
    assert {"recipe-errors", "no-cuda-gpu", "hub-not-reachable", "tokenizer-problems", "out-of-memory", "nan-loss",
            "resume-problems", "port-in-use", "disk-full", "a-rank-died", "tracking-server-away"} <= entries
    missing = {anchor: files for anchor, files in used.items() if anchor not in entries}
    assert not missing, missing
    assert len(used) >= 15


def test_an_error_gets_its_own_anchor_else_its_packages() -> None:
    from forge.data.errors import DataError
    from forge.model.errors import ForgeRuntimeError
    from forge.track.errors import StoreUnreachable

    assert doc_anchor(ForgeRuntimeError("m", "h", doc="nan-loss")) == "nan-loss"
    assert doc_anchor(ForgeRuntimeError("m")) == "run-errors"
    assert doc_anchor(DataError("m")) == "data-errors"
    assert doc_anchor(StoreUnreachable("m")) == "tracking-server-away"
    assert doc_anchor(ForgeError("m")) == "" and see_docs("") == ""
    assert see_docs("disk-full") == " (see docs/troubleshooting.md#disk-full)"


def test_the_cli_line_ends_with_the_pointer(write_recipe: Callable[..., Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe("no_checkpoint")
    assert main(["run", str(recipe), "--resume"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("forge: resume=always, but ") and "no complete checkpoint" in lines[0]
    assert lines[0].endswith("(see docs/troubleshooting.md#resume-problems)")
