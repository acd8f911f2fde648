"""Fixtures for export tests: one tiny LoRA run (the training tests' harness recipe: tiny LLaMA, fake genomics
texts, MLflow to the default SQLite store), trained once per session as `forge run` leaves it."""
from __future__ import annotations

import sys
from pathlib import Path

TRAIN_TESTS = str(Path(__file__).resolve().parents[1] / "train")
if TRAIN_TESTS not in sys.path:
    sys.path.append(TRAIN_TESTS)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def exported_run(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path, genomics_examples: list[str]) -> Path:
    """runs/quick/: 8 steps of LoRA (r 8, embeddings and head trained in full) on the tiny LLaMA, tracked."""
    import harness

    import forge.train.run

    folder = tmp_path_factory.mktemp("export-run")
    recipe = harness.write_recipe(folder, genomics_examples, tiny_llama_dir, name="quick")
    resolved, plan = harness.prepare(recipe, "training.max_steps=8", "tracking.enabled=true",
                                     "tracking.experiment=export-tests")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(forge.train.run, "load_data", harness.fake_bundle)
        summary = forge.train.run.run_recipe(resolved, plan, resume="never", progress=False)
    assert summary["status"] == "completed"
    return Path(plan.run_dir).resolve()
