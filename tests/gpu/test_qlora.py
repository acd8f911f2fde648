"""QLoRA on a GPU: a small real-shaped LLaMA (hidden 1024, 4 layers, random init, built here) loads in 4-bit
NF4, trains, checkpoints, resumes to the same losses, and its adapter reloads onto a 4-bit base.

Self-contained: the model, tokenizer and texts are built in a temporary folder; no network. Skipped
without CUDA or bitsandbytes. Run on the GPU machine with `pytest -m gpu tests/gpu`.
"""
from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
from gpu_runs import small_setup  # noqa: E402
from gpu_texts import Bundle  # noqa: E402
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

RECIPE = """\
run: {{name: {name}, output_dir: {out}, seed: 3}}
data: {{sources: [{{path: {papers}}}], split: {{validation: 0.2, test: 0.0}}}}
preprocess: []
model: {{name_or_path: {model}, dtype: bfloat16}}
quantization: {{mode: 4bit, quant_type: nf4, double_quant: true, compute_dtype: bfloat16}}
lora: {{r: 16, alpha: 32, dropout: 0.0, target_modules: all-linear}}
optimizer: {{name: paged_adamw_8bit, lr: 1.0e-3, warmup_ratio: 0.1}}
training:
  max_steps: 8
  micro_batch_size: auto
  effective_batch_size: 8
  max_seq_length: 128
  gradient_checkpointing: true
  mixed_precision: bf16
  logging_steps: 1
  save_steps: 4
  save_total_limit: 2
tracking: {{enabled: false}}
evaluation: {{enabled: false}}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("bitsandbytes")
    return small_setup(tmp_path_factory.mktemp("qlora"), 120, longest=120, model_longest=120)


def run(setup: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch, callbacks: list[Any] | None = None,
        resume: str = "auto") -> dict[str, Any]:
    import forge.train.run
    from forge.plan import compile_plan
    from forge.recipe.validate import resolve

    recipe = setup["root"] / f"{name}.yaml"
    recipe.write_text(RECIPE.format(name=name, out=setup["root"] / "runs", papers=setup["papers"],
                                    model=setup["model"]))
    monkeypatch.setattr(forge.train.run, "load_data", lambda r, tokenizer=None, progress=True: Bundle(
        r.data.sources[0].path, validation=24))
    resolved = resolve(recipe)
    return forge.train.run.run_recipe(resolved, compile_plan(resolved.recipe), resume=resume, progress=False,
                                      callbacks=callbacks)


def losses(summary: dict[str, Any]) -> dict[int, float]:
    lines = (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if r.get("kind") == "train"}


def test_qlora_trains_checkpoints_and_resumes(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import TrainerCallback

    full = run(setup, "full", monkeypatch)
    assert full["status"] == "completed" and full["steps"] == 8
    assert full["train_loss_last"] < full["train_loss_first"]
    assert full["precision"] == "bf16" and full["dtype"] == "bfloat16"
    assert full["micro_batch_size"] * full["gradient_accumulation_steps"] == 8
    # 4-bit weights count as the parameters they hold: ~54M in the blocks plus embeddings and head
    assert full["total_params"] > 50_000_000 and 0 < full["trainable_params"] < full["total_params"] // 10
    assert 0 < full["peak_memory_bytes"] < 8 * 1024**3  # CUDA max allocated, not host RSS

    class TermAtStep5(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 4:
                os.kill(os.getpid(), signal.SIGTERM)

    part = run(setup, "resumed", monkeypatch, callbacks=[TermAtStep5()])
    assert part["status"] == "interrupted" and part["steps"] == 5
    resumed = run(setup, "resumed", monkeypatch, resume="always")
    assert resumed["status"] == "completed" and resumed["resumed_from"].endswith("checkpoint-5")
    expected, got = losses(full), losses(resumed)
    assert sorted(got) == list(range(1, 9))
    for step in expected:  # bitsandbytes kernels: equal to bf16 noise, not bit for bit
        assert math.isclose(got[step], expected[step], rel_tol=2e-3), (step, got[step], expected[step])


def test_the_adapter_reloads_onto_a_4bit_base(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    summary = run(setup, "reload", monkeypatch)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    base = AutoModelForCausalLM.from_pretrained(setup["model"], quantization_config=quant, dtype=torch.bfloat16,
                                                device_map={"": 0})
    assert any(type(p).__name__ == "Params4bit" for p in base.parameters())
    ids = torch.tensor([[0, 10, 20, 30, 40, 50, 60, 70]], device="cuda")
    with torch.no_grad():
        before = base(input_ids=ids).logits.float()
        tuned = PeftModel.from_pretrained(base, summary["adapter_path"]).eval()
        after = tuned(input_ids=ids).logits.float()
    assert torch.isfinite(after).all() and not torch.allclose(before, after, atol=1e-2)
