"""What a run records besides its metrics, in the default SQLite store: the recipe and its parent chain,
overrides, git commit and dirty state (with the diff), library versions, device; the adapter flags."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from forge.cli import main
from forge.track.mlflow_log import default_uri, start_tracking
from forge.track.metadata import git_state, library_versions, track_run
from track_support import child_recipe, harness


def git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def opened(recipe: Path, *overrides: str) -> tuple[Any, Path]:
    """The MLflow run forge run would open for this recipe (files written as run_recipe writes them)."""
    import json

    resolved, plan = harness().prepare(recipe, *overrides)
    run_dir = Path(plan.run_dir).resolve()
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(resolved.yaml_text)
    (run_dir / "plan.json").write_text(json.dumps(plan.to_dict()))
    tracker = track_run(resolved, plan, run_dir)
    assert tracker is not None
    return tracker, run_dir


def test_the_default_store_gets_the_chain_git_state_and_environment(
        tmp_path: Path, new_store: Callable[[Path], Path], tiny_llama_dir: Path, genomics_examples: list[str],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow import MlflowClient

    recipe = child_recipe(tmp_path, genomics_examples, tiny_llama_dir, "meta", "{enabled: true}")
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "add", "base.yaml", "meta.yaml")
    git(tmp_path, "commit", "-q", "-m", "recipes")
    recipe.write_text(recipe.read_text() + "# tuned by hand\n")  # a change not committed: the tree is dirty
    new_store(tmp_path / "runs")
    monkeypatch.chdir(tmp_path)

    tracker, run_dir = opened(recipe, "optimizer.lr=0.001")
    tracker.finish("completed")
    assert tracker.uri == default_uri(tmp_path / "runs") and tracker.status == "ok"
    client = MlflowClient(tracker.uri)
    run = client.get_run(tracker.run_id)
    tags = run.data.tags
    head = git(tmp_path, "rev-parse", "HEAD")
    assert tags["forge.git.commit"] == tags["mlflow.source.git.commit"] == head
    assert tags["forge.git.dirty"] == "true" and tags["mlflow.source.git.branch"] == "main"
    assert tags["forge.recipe.chain"] == "base.yaml -> meta.yaml" and tags["forge.recipe.overrides"] == "optimizer.lr=0.001"
    assert tags["mlflow.source.name"] == "meta.yaml" and tags["forge.version.forge"]
    assert run.data.params["optimizer.lr"] == "0.001" and run.data.params["run.description"]
    artifacts = {a.path for a in client.list_artifacts(tracker.run_id)}
    assert artifacts == {"recipe.yaml", "plan.json", "environment.json", "recipe_chain", "git_diff.patch"}
    diff = Path(client.download_artifacts(tracker.run_id, "git_diff.patch", str(tmp_path))).read_text()
    assert "+# tuned by hand" in diff
    chain = client.download_artifacts(tracker.run_id, "recipe_chain/2-meta.yaml", str(tmp_path / "dl"))
    assert Path(chain).read_text() == recipe.read_text()  # the file as written, not the resolved recipe
    assert (tmp_path / "runs" / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()

    assert main(["runs", "list"]) == 0  # runs/mlflow.db in the working directory is the default store
    out = capsys.readouterr().out
    assert tracker.run_id[:8] in out and "meta" in out


def test_git_state_outside_a_repository_and_library_versions(tmp_path: Path) -> None:
    import mlflow

    assert git_state(tmp_path) is None
    versions = library_versions()
    assert versions["mlflow"] == mlflow.__version__ and {"forge", "torch", "transformers", "peft", "trl"} <= set(versions)


def test_the_adapter_is_logged_and_registered_as_the_recipe_asks(tmp_path: Path,
                                                                new_store: Callable[[Path], Path]) -> None:
    from mlflow import MlflowClient

    new_store(tmp_path)
    adapter = tmp_path / "r" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    quiet = start_tracking({"enabled": True, "log_adapter": False}, output_dir=str(tmp_path), run_name="quiet",
                           run_dir=tmp_path / "r")
    quiet.log_adapter(adapter, log_files=False)
    quiet.finish("completed")
    client = MlflowClient(default_uri(tmp_path))
    assert client.list_artifacts(quiet.run_id) == []

    registered = start_tracking({"enabled": True, "log_adapter": False, "register_model": "genomics-lora"},
                                output_dir=str(tmp_path), run_name="registered", run_dir=tmp_path / "r")
    registered.log_adapter(adapter, log_files=False)  # registering needs the files: they are logged anyway
    registered.finish("completed")
    assert {a.path for a in client.list_artifacts(registered.run_id)} == {"adapter"}
    version = client.get_model_version("genomics-lora", "1")
    assert version.run_id == registered.run_id
    assert registered.summary()["model_version"] == {"name": "genomics-lora", "version": "1", "source": version.source}
