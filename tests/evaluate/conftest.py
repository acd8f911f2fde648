"""Fixtures for evaluation tests: a run directory (recipe.yaml, adapter/, summary.json) whose LoRA adapter was
fitted for a few steps on the tiny LLaMA, and held-out papers with gold genes, questions and summaries."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval_support import RECIPE, held_out_papers, train_adapter


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path, genomics_examples: list[str]) -> Path:
    """runs/tiny-eval/ with recipe.yaml, adapter/ and summary.json, as `forge run` leaves it (built once)."""
    from forge.recipe.validate import resolve

    root = tmp_path_factory.mktemp("eval-run")
    papers = root / "held_out.json"
    papers.write_text(json.dumps(held_out_papers(24, seed=5)), encoding="utf-8")
    recipe = root / "recipe.yaml"
    recipe.write_text(RECIPE.format(name="tiny-eval", output_dir=root / "runs", papers=papers, model=tiny_llama_dir),
                      encoding="utf-8")
    run_dir = root / "runs" / "tiny-eval"
    run_dir.mkdir(parents=True)
    (run_dir / "recipe.yaml").write_text(resolve(recipe).yaml_text, encoding="utf-8")
    train_adapter(tiny_llama_dir, genomics_examples, run_dir / "adapter")
    (run_dir / "summary.json").write_text(json.dumps({"status": "completed", "mlflow_run_id": None}), encoding="utf-8")
    return run_dir
