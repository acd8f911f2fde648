"""Checkpoint completeness markers and the resume decision."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from forge.model.errors import ForgeRuntimeError
from forge.train.checkpoints import (MARKER, is_complete, latest_complete, list_checkpoints, prepare_run_dir,
                                     remove_incomplete, truncate_metrics, write_marker)


def fake_checkpoint(root: Path, step: int, complete: bool = True) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "adapter_model.safetensors").write_bytes(b"x" * (100 + step))
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if complete:
        write_marker(folder, step)
    return folder


def test_a_checkpoint_is_complete_only_with_a_matching_marker(tmp_path: Path) -> None:
    folder = fake_checkpoint(tmp_path, 4)
    assert is_complete(folder)
    marker = json.loads((folder / MARKER).read_text())
    assert marker["step"] == 4 and marker["files"]["adapter_model.safetensors"] == 104
    (folder / "adapter_model.safetensors").write_bytes(b"x" * 10)  # truncated after the marker: not trusted
    assert not is_complete(folder)
    assert not is_complete(fake_checkpoint(tmp_path, 8, complete=False))
    (tmp_path / "checkpoint-8" / MARKER).write_text("{not json")
    assert not is_complete(tmp_path / "checkpoint-8")


def test_a_marker_for_another_step_or_with_missing_files_is_rejected(tmp_path: Path) -> None:
    folder = fake_checkpoint(tmp_path, 12)
    (folder / "trainer_state.json").unlink()
    assert not is_complete(folder)
    other = fake_checkpoint(tmp_path, 16)
    (other / MARKER).rename(tmp_path / "m.json")
    moved = other.rename(tmp_path / "checkpoint-20")
    (tmp_path / "m.json").rename(moved / MARKER)
    assert not is_complete(moved)


def test_latest_complete_skips_incomplete_and_orders_by_step(tmp_path: Path) -> None:
    for step in (2, 10, 4):
        fake_checkpoint(tmp_path, step)
    fake_checkpoint(tmp_path, 12, complete=False)
    (tmp_path / "notes").mkdir()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-4", "checkpoint-10",
                                                            "checkpoint-12"]
    assert latest_complete(tmp_path).name == "checkpoint-10"
    assert [p.name for p in remove_incomplete(tmp_path)] == ["checkpoint-12"]
    assert not (tmp_path / "checkpoint-12").exists() and (tmp_path / "notes").exists()
    assert latest_complete(tmp_path / "missing") is None


def test_auto_resumes_from_the_newest_complete_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    fake_checkpoint(run / "checkpoints", 4)
    fake_checkpoint(run / "checkpoints", 8, complete=False)
    lines = [{"step": s, "kind": "train", "loss": 1.0 / s} for s in range(1, 8)] + [{"step": 7, "kind": "end"}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 8, "ki')
    notes: list[str] = []
    assert prepare_run_dir(run, "auto", notes) == run / "checkpoints" / "checkpoint-4"
    assert not (run / "checkpoints" / "checkpoint-8").exists()
    kept = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in kept] == [1, 2, 3, 4]
    assert any("checkpoint-4" in n for n in notes) and any("incomplete" in n for n in notes)
    assert prepare_run_dir(run, "always", []) == run / "checkpoints" / "checkpoint-4"


def test_always_without_a_checkpoint_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ForgeRuntimeError, match="no complete checkpoint"):
        prepare_run_dir(tmp_path / "run", "always", [])
    with pytest.raises(ForgeRuntimeError, match="resume mode"):
        prepare_run_dir(tmp_path / "run", "sometimes", [])  # type: ignore[arg-type]


def test_never_moves_the_old_run_aside_instead_of_deleting_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    fake_checkpoint(run / "checkpoints", 4)
    (run / "my-notes.txt").write_text("keep me")
    notes: list[str] = []
    assert prepare_run_dir(run, "never", notes) is None
    assert run.is_dir() and list(run.iterdir()) == []
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.")]
    assert len(aside) == 1 and (aside[0] / "my-notes.txt").read_text() == "keep me"
    assert any(str(aside[0]) in n for n in notes)
    (run / "x").write_text("1")
    prepare_run_dir(run, "never", [])  # twice in the same second: a second, distinct name
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("run.")]) == 2


def test_auto_without_checkpoints_starts_fresh_and_keeps_old_files(tmp_path: Path) -> None:
    run = tmp_path / "run"
    fake_checkpoint(run / "checkpoints", 4, complete=False)
    assert prepare_run_dir(run, "auto", []) is None
    aside = next(p for p in tmp_path.iterdir() if p.name.startswith("run."))
    assert (aside / "checkpoints" / "checkpoint-4").is_dir()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare_run_dir(empty, "auto", []) is None and empty.is_dir()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("empty.")]


def test_truncate_metrics_without_a_file_is_a_no_op(tmp_path: Path) -> None:
    truncate_metrics(tmp_path / "metrics.jsonl", 3)
    assert not (tmp_path / "metrics.jsonl").exists()


def _run_dir_with_plan(tmp_path: Path, strategy: str, world: int) -> Path:
    run_dir = tmp_path / "run"
    fake_checkpoint(run_dir / "checkpoints", 4)
    (run_dir / "plan.json").write_text(json.dumps({"launch": {"strategy": strategy, "world_size": world}}))
    return run_dir


@pytest.mark.parametrize("old, new", [(("deepspeed", 2), ("deepspeed", 1)), (("deepspeed", 2), ("ddp", 2)),
                                      (("ddp", 2), ("deepspeed", 2))])
def test_deepspeed_checkpoints_resume_only_with_the_same_processes(tmp_path: Path, old, new) -> None:
    from forge.train.checkpoints import ModelChanged

    run_dir = _run_dir_with_plan(tmp_path, *old)
    with pytest.raises(ModelChanged) as caught:
        prepare_run_dir(run_dir, "auto", [], plan={"launch": {"strategy": new[0], "world_size": new[1]}})
    assert str(caught.value).startswith(f"cannot resume run: its checkpoints were written by {old[1]} process(es) "
                                        f"under {old[0]}, and the recipe now runs {new[1]} under {new[0]}")
    assert "\n" not in str(caught.value) and caught.value.exit_code == 2
    assert (run_dir / "checkpoints" / "checkpoint-4").is_dir()  # nothing touched


def test_ddp_checkpoints_resume_with_another_process_count_with_a_note(tmp_path: Path) -> None:
    run_dir = _run_dir_with_plan(tmp_path, "ddp", 2)
    notes: list[str] = []
    latest = prepare_run_dir(run_dir, "auto", notes, plan={"launch": {"strategy": "none", "world_size": 1}})
    assert latest is not None and latest.name == "checkpoint-4"
    assert any(n.startswith("resuming with 1 process(es) where the checkpoints were written by 2") for n in notes)
    same: list[str] = []
    prepare_run_dir(run_dir, "auto", same, plan={"launch": {"strategy": "ddp", "world_size": 2}})
    assert not any("process(es)" in n for n in same)
