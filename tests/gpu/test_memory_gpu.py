"""training.memory on a GPU: auto checkpoints nothing where everything fits, a budget between the two ends
checkpoints the first layers only, and both train to the losses of the run that checkpoints every layer; peaks
fall in that order; FLOPs and MFU reach the summary; a GPU that another allocation crowds stops the run with a
one-line error before the model is loaded.

Self-contained (model, tokenizer and texts built in a temporary folder); skipped without CUDA.
"""
from __future__ import annotations

import gc
import json
import time
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
from gpu_texts import SHAPE, Bundle, texts  # noqa: E402
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

RECIPE = """\
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
  mixed_precision: bf16
  logging_steps: 1
  save_steps: 100
  speed: {{compile: "off"}}
tracking: {{enabled: false}}
evaluation: {{enabled: false}}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("bitsandbytes")
    from forge.model.tiny import tiny_llama

    root = tmp_path_factory.mktemp("memory")
    papers = root / "texts.json"
    papers.write_text(json.dumps(texts(48, 1, longest=400)))
    return {"root": root, "model": tiny_llama(SHAPE, texts(400, 0, longest=400), root=root / "cache"), "papers": papers}


def run(setup: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch, *overrides: str) -> dict[str, Any]:
    import forge.train.run
    from forge.plan import compile_plan
    from forge.recipe.validate import resolve

    recipe = setup["root"] / f"{name}.yaml"
    recipe.write_text(RECIPE.format(name=name, out=setup["root"] / "runs", papers=setup["papers"], model=setup["model"]))
    monkeypatch.setattr(forge.train.run, "load_data", lambda r, tokenizer=None, progress=True: Bundle(
        r.data.sources[0].path))
    resolved = resolve(recipe, list(overrides))
    gc.collect()  # an earlier run's model (its fused layers refer to themselves) must not count in this one's base
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    summary = forge.train.run.run_recipe(resolved, compile_plan(resolved.recipe), progress=False)
    assert summary["status"] == "completed", summary.get("error")
    return summary


def losses(summary: dict[str, Any]) -> list[float]:
    lines = (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r.get("kind") == "train"]


def close(a: list[float], b: list[float], rel: float) -> bool:
    return len(a) == len(b) == 6 and all(abs(x - y) <= rel * abs(y) for x, y in zip(a, b))


def test_the_plan_trains_like_full_checkpointing_with_the_memory_it_is_given(
        setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from forge.memory_plan import Sizes, peak_bytes

    full = run(setup, "full", monkeypatch, "training.memory=off")  # every layer checkpointed, as before
    auto = run(setup, "auto", monkeypatch)
    plan = auto["memory"]
    assert plan["choice"]["checkpointed"] == 0 and plan["choice"]["layers"] == 4  # a big GPU holds it all
    assert plan["choice"]["dense"] == 4  # and, with nothing recomputed, every layer's 4-bit weights dequantized
    assert any(n.startswith("memory: 28 4-bit weights of the last 4 layers held dequantized") for n in auto["notes"])
    assert "memory" not in full
    # a budget that the planner meets with the first two layers checkpointed (inputs on the GPU)
    sizes = Sizes(**plan["sizes"])
    budget = int(peak_bytes(sizes, 4, 2, 0, 8 * 512))
    part = run(setup, "part", monkeypatch, f"training.memory={budget}B")
    choice = part["memory"]["choice"]
    assert (choice["checkpointed"], choice["offloaded"], choice["pattern"]) == (2, 0, "first 2"), part["memory"]
    assert any(n.startswith("memory: the first 2 of 4 layers checkpointed") for n in part["notes"])
    assert losses(full)[0] > losses(full)[-1]  # it learns
    for other in (auto, part):
        assert close(losses(other), losses(full), 2e-2), (losses(other), losses(full))
    peaks = [s["peak_memory_bytes"] for s in (full, part, auto)]
    assert peaks[0] < peaks[1] < peaks[2], peaks  # fewer recomputed layers, more memory
    print("predicted / measured peak:", [(s["memory"]["predicted_peak_bytes"], s["peak_memory_bytes"])
                                         for s in (part, auto)])
    flops = auto["flops"]
    assert flops["recompute_per_token"] == 0 and part["flops"]["recompute_per_token"] > 0
    assert flops["peak_flops"] and 0 < flops["mfu"] < 1 and flops["hfu"] == flops["mfu"]
    assert full["flops"]["hfu"] > full["flops"]["mfu"]


def test_a_crowded_gpu_stops_the_run_before_loading(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from forge.model.errors import ForgeRuntimeError

    free, _ = torch.cuda.mem_get_info()
    hog = torch.empty(free - 256 * 2**20, dtype=torch.uint8, device="cuda")  # another process's memory, as it were
    try:
        started = time.perf_counter()
        with pytest.raises(ForgeRuntimeError) as caught:
            run(setup, "crowded", monkeypatch)
        elapsed = time.perf_counter() - started
    finally:
        del hog
        torch.cuda.empty_cache()
    message = str(caught.value)
    assert "free of" in message and "other processes hold the rest" in message and "\n" not in message
    assert elapsed < 30  # no model was loaded
