"""Helpers for export tests: logits of a model on a fixed input, the reference model (base + adapter through
PEFT), a card's YAML header, and the one line a refused export prints."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

# token ids of a fixed input (the tiny tokenizer has 500+ ids; 0 is <s>)
PROBE = [[0, 12, 40, 7, 99, 23, 5, 61, 150, 3, 77, 201, 310, 9, 44, 2]]


def logits(model: Any) -> Any:
    import torch

    model.eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(PROBE)).logits.float()


def reference_model(base_dir: Path, adapter_dir: Path) -> Any:
    """The base in float32 with the run's adapter on top, unmerged: what the export must reproduce."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    return PeftModel.from_pretrained(base, str(adapter_dir))


def relative_error(a: Any, b: Any) -> float:
    """Largest absolute difference, relative to the largest absolute logit of `a`."""
    return float((a - b).abs().max() / a.abs().max())


def card_header(folder: Path) -> dict[str, Any]:
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def fake_run(folder: Path, recipe_text: str, adapter_from: Path | None = None) -> Path:
    """A run directory: recipe.yaml, a completed summary.json, and a copy of an adapter folder."""
    folder.mkdir(parents=True)
    (folder / "recipe.yaml").write_text(recipe_text)
    (folder / "summary.json").write_text(json.dumps({"status": "completed", "mlflow_run_id": None}))
    if adapter_from is not None:
        shutil.copytree(adapter_from, folder / "adapter")
    return folder


def resolved_text(run_dir: Path, *overrides: str) -> str:
    from forge.recipe.validate import resolve

    return resolve(run_dir / "recipe.yaml", list(overrides)).yaml_text
