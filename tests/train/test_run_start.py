"""What `forge run` decides before it imports torch: a run directory it cannot create or write is one line and
exit 2 before anything is loaded; a run that is already finished says so at once."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
# `forge run`, in a fresh interpreter that reports whether torch was imported
CHILD = ("import sys\nfrom forge.cli import main\ncode = main(sys.argv[1:])\n"
         "print('torch imported:', 'torch' in sys.modules, file=sys.stderr)\nsys.exit(code)\n")


def forge_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", CHILD, "run", str(QUICKSTART), *args], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def assert_one_line_refusal(done: subprocess.CompletedProcess[str], folder: Path) -> None:
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert lines[-1] == "torch imported: False"  # refused before anything heavy was imported
    assert len(lines) == 2 and lines[0].startswith(f"forge: cannot create or write the run directory {folder}")
    assert "run-directory-not-writable" in lines[0] and "Traceback" not in done.stderr
    assert "forge run" not in done.stdout  # nothing was started


def test_an_output_folder_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = forge_run(f"run.output_dir={blocker / 'runs'}")
    assert_one_line_refusal(done, blocker / "runs" / "quickstart")
    assert "Not a directory" in done.stderr


@pytest.fixture
def read_only_folder(tmp_path: Path):
    folder = tmp_path / "shared"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    # root writes through permission bits: a read-only file system is what refuses it
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_read_only_output_folder_is_one_line(read_only_folder: Path) -> None:
    done = forge_run(f"run.output_dir={read_only_folder}")
    assert_one_line_refusal(done, read_only_folder / "quickstart")
    assert "Read-only file system" in done.stderr or "Permission denied" in done.stderr


def test_a_finished_run_is_recognised_before_torch_is_imported(tmp_path: Path) -> None:
    from forge.data.readers import source_digests
    from forge.plan import compile_plan
    from forge.recipe.validate import resolve
    from forge.atomic import write_json, write_text

    overrides = [f"run.output_dir={tmp_path}"]
    resolved = resolve(QUICKSTART, overrides)
    run_dir = Path(compile_plan(resolved.recipe).run_dir)
    write_text(run_dir / "recipe.yaml", resolved.yaml_text)
    write_json(run_dir / "summary.json", {"status": "completed", "steps": 124, "adapter_path": str(run_dir / "adapter"),
                                          "data": {"sources_sha256": source_digests(resolved.recipe.data.sources)}})
    done = forge_run(*overrides)
    assert done.returncode == 0, done.stderr
    assert f"forge: {run_dir} already holds this recipe's finished run (124 steps" in done.stdout
    assert done.stderr.splitlines()[-1] == "torch imported: False"
