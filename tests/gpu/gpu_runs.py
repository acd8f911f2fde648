"""How the GPU tests set up and run a training: a small LLaMA of gpu_texts.SHAPE and a JSON file of texts in a
temporary folder, a recipe template run over them with forge.data's loading replaced by gpu_texts.Bundle, and
the train losses of the run read back from its metrics."""
from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import pytest
from gpu_texts import SHAPE, Bundle, texts

# Six QLoRA steps of 8 x 512 tokens on the small LLaMA, as a template of `run` ({name}, {out}, {papers}, {model}).
_SIX_STEPS_START = """\
run: {{name: {name}, output_dir: {out}, seed: 3}}
data: {{sources: [{{path: {papers}}}], split: {{validation: 0.0, test: 0.0}}}}
preprocess: []
model: {{name_or_path: {model}, dtype: bfloat16}}
quantization: {{mode: 4bit, quant_type: nf4, double_quant: true, compute_dtype: bfloat16}}
lora: {{r: 16, alpha: 32, dropout: 0.0, target_modules: all-linear}}
optimizer: {{name: adamw_torch, lr: 1.0e-3, warmup_ratio: 0.0, scheduler: constant}}
training:
  max_steps: 6
  micro_batch_size: 8
  max_seq_length: 512
"""
_SIX_STEPS_END = """\
tracking: {{enabled: false}}
evaluation: {{enabled: false}}
"""


def six_qlora_steps(training: str) -> str:
    """The recipe template of six QLoRA steps with `training` (the rest of the training section) in the middle."""
    return _SIX_STEPS_START + training + _SIX_STEPS_END


def small_setup(root: Path, papers: int, longest: int, model_longest: int, **extra: Any) -> dict[str, Any]:
    """{"root", "model": a tiny LLaMA whose tokenizer learnt 400 texts of up to `model_longest` words, "papers": a
    JSON list of `papers` texts of up to `longest` words}, and `extra` (a `recipe` template for `run`)."""
    from forge.model.tiny import tiny_llama

    texts_file = root / "texts.json"
    texts_file.write_text(json.dumps(texts(papers, 1, longest=longest)))
    model = tiny_llama(SHAPE, texts(400, 0, longest=model_longest), root=root / "cache")
    return {"root": root, "model": model, "papers": texts_file, **extra}


def run(setup: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch, *overrides: str) -> dict[str, Any]:
    """setup["recipe"] named `name` with `overrides`, trained to completion with the CUDA peak memory counted from
    its start (from an emptied cache where setup["empty_cache"]); its summary."""
    import torch

    import forge.train.run
    from forge.plan import compile_plan
    from forge.recipe.validate import resolve

    recipe = setup["root"] / f"{name}.yaml"
    recipe.write_text(setup["recipe"].format(name=name, out=setup["root"] / "runs", papers=setup["papers"],
                                             model=setup["model"]))
    monkeypatch.setattr(forge.train.run, "load_data", lambda r, tokenizer=None, progress=True: Bundle(
        r.data.sources[0].path))
    resolved = resolve(recipe, list(overrides))
    if setup.get("empty_cache"):
        gc.collect()  # an earlier run's model (its fused layers refer to themselves) must not count in this one's base
        torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    summary = forge.train.run.run_recipe(resolved, compile_plan(resolved.recipe), progress=False)
    assert summary["status"] == "completed", summary.get("error")
    return summary


def losses(summary: dict[str, Any]) -> list[float]:
    """The train loss of each logged step of a finished run."""
    lines = (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r.get("kind") == "train"]


def close(a: list[float], b: list[float], rel: float) -> bool:
    """Six losses each, every pair within `rel` of the second."""
    return len(a) == len(b) == 6 and all(abs(x - y) <= rel * abs(y) for x, y in zip(a, b))
