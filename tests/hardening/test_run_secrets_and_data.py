"""A tiny training run with secrets in the environment writes them nowhere (run directory, MLflow store,
printed output); a data file that changes between runs is caught by its sha256 before a resume."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

import harness

MARKER = "s3cr3t-MARKER-7f4e2a"
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD",
              "MLFLOW_TRACKING_USERNAME", "FORGE_HARDENING_API_KEY", "OPENAI_API_KEY", "WANDB_API_KEY")


def _run(recipe: Path, *overrides: str, resume: str = "never", callbacks: list[Any] | None = None
         ) -> tuple[dict[str, Any], str]:
    import forge.train.run

    resolved, plan = harness.prepare(recipe, *overrides)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        summary = forge.train.run.run_recipe(resolved, plan, resume=resume, progress=True, callbacks=callbacks)
    return summary, out.getvalue()


@pytest.mark.slow
def test_secrets_from_the_environment_are_never_written(tmp_path: Path, tiny_llama_dir: Path,
                                                        genomics_examples: list[str], fake_data: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_ENV:
        monkeypatch.setenv(name, f"{MARKER}-{name}")
    # a CI checkout's remote carries a token too
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin",
                    f"https://x-access-token:{MARKER}@example.com/o/r.git"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q",
                    "--allow-empty", "-m", "x"], check=True)
    recipe = harness.write_recipe(tmp_path, genomics_examples, tiny_llama_dir, name="secrets",
                                  extra="serving: {api_key_env: FORGE_HARDENING_API_KEY}\n")
    summary, output = _run(recipe, "tracking.enabled=true", "tracking.experiment=hardening", "training.max_steps=4",
                           "training.save_steps=2")
    assert summary["status"] == "completed"
    assert MARKER not in output
    files = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert any(p.name == "mlflow.db" for p in files) and any(p.name == "environment.json" for p in files)
    assert any("checkpoint-" in str(p) for p in files) and any(p.name == "recipe.yaml" for p in files)
    leaked = [str(p) for p in files if MARKER.encode() in p.read_bytes()]
    assert not leaked, f"secret written to {leaked}"
    # and through MLflow's own API: params, tags, artifacts of the run
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.params and run.data.tags
    assert run.data.params.get("serving.api_key_env") == "FORGE_HARDENING_API_KEY"  # the name, never the value
    for key, value in {**run.data.params, **run.data.tags}.items():
        assert MARKER not in key and MARKER not in value, key
    assert "example.com/o/r.git" in run.data.tags.get("mlflow.source.git.repoURL", "")
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "environment.json" in artifacts and "plan.json" in artifacts


class InterruptAt(TrainerCallback):
    """Sends this process SIGINT at a step: the run saves a checkpoint and stops as 'interrupted'."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.slow
def test_a_data_file_changed_between_runs_refuses_to_resume(tmp_path: Path, tiny_llama_dir: Path,
                                                            genomics_examples: list[str], fake_data: None) -> None:
    from forge.train.checkpoints import DataChanged, prepare_run_dir

    recipe = harness.write_recipe(tmp_path, genomics_examples, tiny_llama_dir, name="changing")
    papers = tmp_path / "texts.json"
    summary, _ = _run(recipe, "training.max_steps=6", "training.save_steps=2", callbacks=[InterruptAt(2)])
    assert summary["status"] == "interrupted" and summary["checkpoints"]
    run_dir = Path(summary["run_dir"])
    import hashlib

    recorded = summary["data"]["sources_sha256"]
    assert recorded == {str(papers): hashlib.sha256(papers.read_bytes()).hexdigest()}

    original = papers.read_bytes()
    papers.write_text(json.dumps(genomics_examples[:-1] + ["A changed paper about TP53."]))
    before = sorted(p.name for p in run_dir.rglob("*"))
    with pytest.raises(DataChanged) as caught:
        _run(recipe, "training.max_steps=6", "training.save_steps=2", resume="auto")
    message = str(caught.value)
    assert "\n" not in message and str(papers) in message and "changed (sha256" in message and "--fresh" in message
    assert caught.value.exit_code == 2
    assert sorted(p.name for p in run_dir.rglob("*")) == before  # nothing touched: no truncation, no move

    # through the CLI: exit 2, one `forge: ...` line naming the file
    import forge.cli

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = forge.cli.main(["run", str(recipe), "training.max_steps=6", "training.save_steps=2", "--resume"])
    assert code == 2
    assert err.getvalue().count("\n") == 1 and err.getvalue().startswith("forge: cannot resume changing: data file ")

    # a removed file and a new file in a source folder are changes too
    digests = dict(recorded)
    with pytest.raises(DataChanged, match="is gone"):
        prepare_run_dir(run_dir, "auto", [], sources_sha256={})
    with pytest.raises(DataChanged, match="is new"):
        prepare_run_dir(run_dir, "auto", [], sources_sha256={**digests, str(tmp_path / "more.json"): "0" * 64})

    # restoring the file lets the run resume and finish
    papers.write_bytes(original)
    summary, _ = _run(recipe, "training.max_steps=6", "training.save_steps=2", resume="auto")
    assert summary["status"] == "completed" and "checkpoint-" in summary["resumed_from"]
    assert summary["data"]["sources_sha256"] == recorded

    # running the finished recipe again trains nothing, unless its data changed since
    args = ["run", str(recipe), "training.max_steps=6", "training.save_steps=2"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert forge.cli.main(args) == 0
    assert "already holds this recipe's finished run" in out.getvalue()
    papers.write_text(json.dumps(genomics_examples[:-1] + ["A changed paper about TP53."]))
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert forge.cli.main(args) == 2
    assert "changed (sha256" in err.getvalue() and err.getvalue().count("\n") == 1

    # --fresh starts over on new data (the old run directory is moved aside)
    papers.write_text(json.dumps(genomics_examples[:-1] + ["A changed paper about TP53."]))
    summary, _ = _run(recipe, "training.max_steps=2", "training.save_steps=2", resume="never")
    assert summary["status"] == "completed" and summary["data"]["sources_sha256"] != recorded


def test_source_digests_cover_folders_and_skip_hub_datasets(tmp_path: Path) -> None:
    from forge.data.readers import source_digests
    from forge.recipe.schema import DataSource

    (tmp_path / "corpus" / ".hidden").mkdir(parents=True)
    (tmp_path / "corpus" / "a.jsonl").write_text("{}\n")
    (tmp_path / "corpus" / "b.md").write_text("# b\n")
    (tmp_path / "corpus" / ".hidden" / "c.md").write_text("# c\n")
    digests = source_digests([DataSource(path=str(tmp_path / "corpus")), DataSource(hf_dataset="x/y"),
                              DataSource(path=str(tmp_path / "missing.json"))])
    assert sorted(Path(p).name for p in digests) == ["a.jsonl", "b.md"]


def test_a_changed_model_or_adapter_shape_refuses_to_resume(tmp_path: Path, tiny_llama_dir: Path,
                                                            genomics_examples: list[str], fake_data: None) -> None:
    """Checkpoints of r=8 adapters cannot load into r=4 ones: one line naming the key, exit 2, nothing touched;
    the same recipe resumes, --fresh starts over."""
    from forge.train.checkpoints import ModelChanged, weights_identity

    recipe = harness.write_recipe(tmp_path, genomics_examples, tiny_llama_dir, name="reshaped")
    summary, _ = _run(recipe, "training.max_steps=6", "training.save_steps=2", callbacks=[InterruptAt(2)])
    assert summary["status"] == "interrupted" and summary["checkpoints"]
    run_dir = Path(summary["run_dir"])
    before = {p: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}
    with pytest.raises(ModelChanged) as caught:
        _run(recipe, "training.max_steps=6", "training.save_steps=2", "lora.r=4", resume="auto")
    message = str(caught.value)
    assert message.startswith("cannot resume reshaped: its checkpoints were trained with lora.r 8, and the recipe "
                              "now says 4; restore the recipe to resume, or run with --fresh")
    assert caught.value.exit_code == 2 and caught.value.doc == "resume-problems"
    assert {p: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()} == before  # plan.json too

    import forge.cli

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = forge.cli.main(["run", str(recipe), "training.max_steps=6", "training.save_steps=2",
                               "model.tiny.hidden_size=32", "lora.target_modules=[q_proj]", "lora.use_dora=true"])
    assert code == 2 and err.getvalue().count("\n") == 1  # model.tiny does not shape a model from a folder
    assert "trained with lora.target_modules 'all-linear', and the recipe now says ['q_proj'] (and 1 more)" \
        in err.getvalue()

    # what does not shape the weights may change on resume (a longer run, another learning rate)
    resumed, _ = _run(recipe, "training.max_steps=8", "training.save_steps=2", "optimizer.lr=1.0e-3", resume="auto")
    assert resumed["status"] == "completed" and resumed["steps"] == 8
    assert Path(resumed["resumed_from"]).name in summary["checkpoints"]
    fresh, _ = _run(recipe, "training.max_steps=2", "training.save_steps=2", "lora.r=4", resume="never")
    assert fresh["status"] == "completed" and fresh["resumed_from"] is None
    assert weights_identity(json.loads((run_dir / "plan.json").read_text()))["lora.r"] == 4
