"""`forge validate` reports a data source path that does not exist at the line and column that set it (file
or override), exit 2, without reading data or importing the training stack."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from forge.cli import main


def test_missing_source_is_reported_where_it_was_set(write: Callable[[str, str], Path],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write("r.yaml", """
        data:
          sources:
            - path: papers.json
            - path: missing/folder
        model:
          name_or_path: forge:tiny-llama
        """)
    (recipe.parent / "papers.json").write_text("[]")
    assert main(["validate", str(recipe)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{recipe}:4:7: data.sources.1.path: data source {recipe.parent / 'missing' / 'folder'} does not exist; "
        "paths are relative to the recipe file that sets them"]


def test_a_missing_path_from_an_override_names_the_override(write: Callable[[str, str], Path], minimal: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(minimal), "--set", "data.sources=[{path: /no/such/papers}]", "--json"]) == 2
    [issue] = json.loads(capsys.readouterr().out)
    assert (issue["file"], issue["path"]) == ("<overrides>", "data.sources.0.path")
    assert issue["message"] == "data source /no/such/papers does not exist"


def test_validate_reads_no_data_and_imports_no_torch(write: Callable[[str, str], Path]) -> None:
    recipe = write("r.yaml", "data: {sources: [{path: papers}]}\nmodel: {name_or_path: forge:tiny-llama}\n")
    (recipe.parent / "papers").mkdir()
    (recipe.parent / "papers" / "broken.json").write_text("{not json")  # a reader would report it; validate does not read
    code = ("import sys\nfrom forge.cli import main\ncode = main(['validate', sys.argv[1]])\n"
            "print(code, 'torch' in sys.modules, 'forge.data.readers' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(recipe)], capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "0 False False", done.stderr
