"""training.memory's budget on the device (forge/train/memory.py), with CUDA's memory queries answered by the
test: auto plans for what is free, a size larger than what is free falls back to more checkpointing with a note,
nothing that fits is a one-line error, and a GPU too crowded for the smallest setting stops a run before loading."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from forge.model.errors import ForgeRuntimeError
from forge.recipe.validate import resolve
from forge.train import memory
from forge.train.speed import Speed

GIB = 2**30
SPEED = Speed(liger_kernels=True, fused_lora=True, padding_free=True, activation_offload=True)


def recipe(tmp_path: Path, *overrides: str):
    path = tmp_path / "r.yaml"
    (tmp_path / "p.json").write_text("[]")
    path.write_text("data: {sources: [{path: p.json}]}\nmodel: {name_or_path: meta-llama/Llama-2-7b-hf}\n"
                    "quantization: {mode: 4bit}\n"
                    "lora: {r: 16, target_modules: all-linear}\n"
                    "training: {micro_batch_size: 8, max_seq_length: 2048}\n")
    return resolve(path, list(overrides)).recipe


class Seven:
    """What plan_after_load reads of a loaded 7B QLoRA model: its config, and its trainable parameters."""

    class config:  # noqa: N801
        hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads = 4096, 32, 32, 32
        intermediate_size, vocab_size = 11008, 32000

    def parameters(self):
        return [torch.zeros(40_000_000, dtype=torch.bfloat16, requires_grad=True)]

    def modules(self):  # no 4-bit layers to hold dequantized
        return iter(())


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch):
    state = {"free": 135 * GIB, "total": 139 * GIB, "allocated": 4 * GIB}
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (state["free"], state["total"]))
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a: state["allocated"])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    return state


def test_auto_plans_for_what_is_free(tmp_path: Path, gpu: dict) -> None:
    notes: list[str] = []
    big = memory.plan_after_load(recipe(tmp_path), Seven(), SPEED, notes)
    assert big.choice.checkpointed == 0 and big.source.startswith("auto:")  # 71 GiB of activations fit 135 free
    assert big.choice.tokens_per_second and notes[-1].startswith("memory: no layer checkpointed")
    gpu["free"] = 40 * GIB  # the same GPU, shared: the plan checkpoints instead
    small = memory.plan_after_load(recipe(tmp_path), Seven(), SPEED, [])
    assert 0 < small.choice.checkpointed < 32 and small.choice.peak_bytes <= small.budget
    assert small.budget == pytest.approx(4 * GIB + (40 * GIB - 0.03 * 139 * GIB) / 1.2)


def test_a_size_larger_than_what_is_free_falls_back_to_more_checkpointing(tmp_path: Path, gpu: dict) -> None:
    gpu["free"] = 12 * GIB
    notes: list[str] = []
    plan = memory.plan_after_load(recipe(tmp_path, "training.memory=40GiB"), Seven(), SPEED, notes)
    assert plan.budget < 40 * GIB and plan.choice.peak_bytes <= plan.budget and plan.choice.checkpointed > 20
    assert "lowered" in plan.source and any("only" in n and "planning for that" in n for n in notes)
    at16 = memory.plan_after_load(recipe(tmp_path, "training.memory=16GiB"), Seven(), SPEED, [])
    assert at16.budget < 16 * GIB and "lowered" in at16.source  # 12 GiB free


def test_nothing_that_fits_is_one_line(tmp_path: Path, gpu: dict) -> None:
    with pytest.raises(ForgeRuntimeError) as caught:
        memory.plan_after_load(recipe(tmp_path, "training.memory=5GiB"), Seven(), SPEED, [])
    assert "nothing fits 5GiB" in str(caught.value) and "\n" not in str(caught.value)


def test_a_crowded_gpu_stops_before_loading(tmp_path: Path, gpu: dict) -> None:
    from forge.plan import compile_plan

    r = recipe(tmp_path)
    gpu["free"] = 6 * GIB  # less the margin (4.2 GiB on 139) leaves too little for even the smallest setting
    with pytest.raises(ForgeRuntimeError) as caught:
        memory.check_before_load(r, SPEED, compile_plan(r).estimate)
    assert "6.0 GiB free of 139.0 GiB" in str(caught.value)
    gpu["free"] = 30 * GIB
    assert memory.check_before_load(r, SPEED, compile_plan(r).estimate) == "memory: 30.0 GiB free of 139.0 GiB before loading"


def test_forge_plan_shows_the_choice_for_a_size_and_the_two_ends_for_auto(tmp_path: Path) -> None:
    from forge.plan import compile_plan

    at16 = compile_plan(recipe(tmp_path, "training.memory=16GiB", "training.max_seq_length=8192",
                               "training.micro_batch_size=1")).estimate["memory_plan"]
    assert at16["budget"] == "16GiB" and at16["choice"].startswith("the first 22 of 32 layers checkpointed")
    assert "peak 16.0 GiB" in at16["choice"] and "tokens/s" in at16["choice"]
    auto = compile_plan(recipe(tmp_path)).estimate["memory_plan"]
    assert auto["fastest"].startswith("no layer checkpointed") and auto["least"].startswith("all 32 layers")
    assert compile_plan(recipe(tmp_path, "training.memory=off")).estimate["memory_plan"] == {"budget": "off"}
