"""Continued training (`model.adapter`): a run on new papers starts from a finished run's adapter (its weights,
hence its validation loss) and improves on it; it records its parent in summary.json and MLflow, and `forge runs
show` prints the lineage; an adapter of another base or shape is refused in one line."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerCallback

import harness
from forge.cli import main

pytestmark = pytest.mark.slow


def new_papers(n: int, seed: int) -> list[str]:
    """Papers of the same kind as the parent's, other ones (tests/conftest.py's generator, another seed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tests_root_conftest", Path(__file__).parents[1] / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.genomics_corpus(n, seed=seed)


class LogitsAtStart(TrainerCallback):
    """The model's logits on harness.PROBE_IDS before the first step."""

    logits: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        import torch

        was_training = model.training
        model.eval()
        with torch.no_grad():
            self.logits = model(input_ids=torch.tensor(harness.PROBE_IDS)).logits.clone()
        model.train(was_training)


def store_of(reference: Any) -> str:
    return f"sqlite:///{reference.run_dir.parent / 'mlflow.db'}"


@pytest.fixture(scope="module")
def continued(reference_run: Any, tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """8 steps on 80 new papers, starting from the reference run's adapter, tracked in the reference's store."""
    import forge.train.run

    folder = tmp_path_factory.mktemp("continued")
    recipe = harness.write_recipe(folder, new_papers(80, seed=9), tiny_llama_dir, name="week2")
    resolved, plan = harness.prepare(recipe, f"model.adapter={reference_run.run_dir}", "training.max_steps=8",
                                     "tracking.enabled=true", f"tracking.uri={store_of(reference_run)}",
                                     "tracking.experiment=forge-tests")
    start = LogitsAtStart()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(forge.train.run, "load_data", harness.fake_bundle)
        summary = forge.train.run.run_recipe(resolved, plan, resume="never", progress=False, callbacks=[start])
    return {"summary": summary, "start": start.logits, "recipe": recipe, "run_dir": Path(plan.run_dir)}


def test_starts_from_the_parent_and_improves_on_it(continued: dict[str, Any], reference_run: Any) -> None:
    import torch

    summary, parent = continued["summary"], reference_run.summary
    assert summary["status"] == "completed"
    # the first step sees the parent's trained model exactly (not a fresh adapter on the base)
    assert torch.allclose(continued["start"], reference_run.logits, atol=1e-5)
    child, before = summary["eval"], parent["eval"]
    assert child["first_step"] == 0
    # on new papers of the same kind, the start is the parent's level, far below the base model's
    assert abs(child["first_loss"] - before["loss"]) < 0.1
    assert child["first_loss"] < before["first_loss"] - 0.5
    assert child["loss"] < child["first_loss"] - 0.05  # and training goes on from there


def test_the_run_records_its_parent_and_shows_the_lineage(continued: dict[str, Any], reference_run: Any,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mlflow import MlflowClient

    summary, parent = continued["summary"], reference_run.summary
    assert summary["parent"]["run_dir"] == str(reference_run.run_dir)
    assert summary["parent"]["adapter"] == str(reference_run.run_dir / "adapter")
    assert summary["parent"]["mlflow_run_id"] == parent["mlflow_run_id"]
    assert summary["parent"]["eval_loss"] == parent["eval"]["loss"]
    assert json.loads((continued["run_dir"] / "summary.json").read_text())["parent"] == summary["parent"]

    store = store_of(reference_run)
    tags = MlflowClient(tracking_uri=store).get_run(summary["mlflow_run_id"]).data.tags
    assert tags["forge.parent.run_id"] == parent["mlflow_run_id"] and tags["forge.parent.run_name"] == "reference"
    capsys.readouterr()
    assert main(["runs", "show", summary["mlflow_run_id"], "--uri", store]) == 0
    assert f"continued from  reference ({parent['mlflow_run_id'][:8]})" in capsys.readouterr().out
    assert main(["runs", "show", summary["mlflow_run_id"], "--uri", store, "--json"]) == 0
    lineage = json.loads(capsys.readouterr().out)["lineage"]
    assert [(e["run_id"], e["name"]) for e in lineage] == [(parent["mlflow_run_id"], "reference")]
    # and the model card of its export says where it started
    assert main(["export", str(continued["run_dir"]), "--format", "adapter", "--out", str(tmp_path / "card")]) == 0
    card = (tmp_path / "card" / "README.md").read_text()
    assert f"continued from the adapter `{reference_run.run_dir / 'adapter'}` (run `reference`)" in card


def refused_run(capsys: pytest.CaptureFixture[str], recipe: Path, *overrides: str) -> str:
    capsys.readouterr()
    assert main(["run", str(recipe), *overrides]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("forge: "), lines
    assert lines[0].endswith("(see docs/troubleshooting.md#continued-training)")
    return lines[0]


def test_an_adapter_that_does_not_fit_is_refused(reference_run: Any, write_recipe: Any, fake_data: None,
                                                 tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe("refused")
    parent = reference_run.run_dir
    line = refused_run(capsys, recipe, f"model.adapter={parent}", "lora.r=4")
    assert f"lora.r is 4 but the adapter in {parent / 'adapter'} has 8" in line
    line = refused_run(capsys, recipe, f"model.adapter={parent}", "lora.target_modules=[q_proj,v_proj]")
    assert "lora.target_modules is ['q_proj', 'v_proj']" in line
    line = refused_run(capsys, recipe, f"model.adapter={tmp_path / 'nothing'}")
    assert "does not exist" in line

    other = tmp_path / "other-base"
    shutil.copytree(parent / "adapter", other)
    config = json.loads((other / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "meta-llama/Llama-2-7b-hf"
    (other / "adapter_config.json").write_text(json.dumps(config))
    line = refused_run(capsys, recipe, f"model.adapter={other}")
    assert "was trained on meta-llama/Llama-2-7b-hf, not on this run's base" in line


def test_continuing_needs_lora(write_recipe: Any, reference_run: Any, capsys: pytest.CaptureFixture[str]) -> None:
    recipe = write_recipe("no_lora")
    assert main(["validate", str(recipe), "--set", f"model.adapter={reference_run.run_dir}",
                 "--set", "lora.enabled=false"]) == 2
    assert "model.adapter: continuing an adapter trains LoRA, and lora.enabled is false" in capsys.readouterr().err
