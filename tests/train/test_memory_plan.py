"""training.memory's planner (forge/memory_plan.py) and the FLOP count (forge/flops.py): given sizes in, the
choice out; and on the CPU, a model whose first layers alone are checkpointed (some of their inputs through
Forge's offload path) gets the gradients of the model checkpointed nowhere."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from forge.estimate import KNOWN_SHAPES, Shape
from forge.flops import flops_per_token, peak_flops
from forge.memory_plan import (Sizes, activation_sizes, budget_from_free, choose, dense_layer_bytes, efficiency,
                               peak_bytes, smallest)
from forge.sizes import GIB, parse_size

LLAMA2_7B = KNOWN_SHAPES["meta-llama/Llama-2-7b-hf"]
MB = 2**20
# round sizes, so that the expected choices can be worked out by hand: 10 layers; per token a kept layer is
# 1 MiB, a layer input 0.1 MiB, the recompute 1.2 MiB; base 10 GiB; no LM head tile
TOY = Shape(hidden=64, layers=10, heads=4, kv_heads=4, intermediate=128, vocab=100)
SIZES = Sizes(base=10 * GIB, kept=1 * MB, layer_input=0.1 * MB, head=0)


def pick(budget_gib: float, **kwargs):
    options = dict(seq=1024, micro_batches=[1], lora_r=8)
    options.update(kwargs)
    return choose(TOY, SIZES, budget_gib * GIB, **options)


def test_sizes_parse_in_both_unit_systems() -> None:
    assert parse_size("16GiB") == 16 * 2**30
    assert parse_size("16GB") == 16 * 10**9
    assert parse_size("1.5 MiB") == int(1.5 * 2**20)
    assert parse_size("81559MiB") == 81559 * 2**20
    for bad in ("16", "16G", "GiB", "-1GiB", "16 parsecs"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_the_peak_is_the_turn_or_the_recompute_whichever_is_higher() -> None:
    tokens = 1024  # 1 GiB per kept layer, 0.1 GiB per input, 1.2 GiB of recompute
    assert peak_bytes(SIZES, 10, 0, 0, tokens) == pytest.approx(20 * GIB)  # every layer kept
    assert peak_bytes(SIZES, 10, 10, 0, tokens) == pytest.approx(10 * GIB + 1 * GIB + 1.2 * GIB)
    assert peak_bytes(SIZES, 10, 10, 10, tokens) == pytest.approx(10 * GIB + 0.2 * GIB + 1.2 * GIB)  # two in flight
    assert peak_bytes(SIZES, 10, 4, 0, tokens) == pytest.approx(10 * GIB + 6 * GIB + 0.4 * GIB)


def test_a_budget_that_holds_everything_checkpoints_nothing() -> None:
    choice = pick(25)
    assert (choice.checkpointed, choice.offloaded, choice.pattern()) == (0, 0, "none")
    assert choice.hardware_flops == choice.model_flops


def test_a_tighter_budget_checkpoints_the_fewest_layers_that_fit() -> None:
    # 16 GiB: 10 + (10 - c) + 0.1 c <= 16 -> c >= 4.44 -> 5 layers, inputs on the GPU
    choice = pick(16)
    assert (choice.checkpointed, choice.offloaded, choice.pattern()) == (5, 0, "first 5")
    assert choice.peak_bytes <= 16 * GIB
    assert choice.hardware_flops > choice.model_flops


def test_inputs_are_offloaded_only_when_the_layers_alone_do_not_fit() -> None:
    # 11.5 GiB: with its inputs on the GPU no count of checkpointed layers fits (the turn needs c >= 10 - the
    # recompute, 10 + 0.1 c + 1.2, c <= 3); offloading m inputs saves 0.1 GiB each (two stay in flight): 9 layers,
    # 8 inputs: turn 10 + 1 + 0.3 = 11.3, recompute 10 + 0.3 + 1.2 = 11.5 (7 inputs: a recompute of 11.6)
    choice = pick(11.5)
    assert (choice.checkpointed, choice.offloaded) == (9, 8)
    assert pick(11.5, may_offload=False) is None
    assert pick(16, must_offload=True).offloaded == pick(16, must_offload=True).checkpointed


def test_nothing_fits_gives_none_and_smallest_says_what_would() -> None:
    assert pick(11) is None
    least = smallest(TOY, SIZES, seq=1024, micro_batch=1, lora_r=8)
    assert (least.checkpointed, least.offloaded) == (10, 10) and least.peak_bytes == pytest.approx(11.4 * GIB)


def test_without_gradient_checkpointing_only_the_full_setting_is_considered() -> None:
    assert pick(16, may_checkpoint=False) is None
    assert pick(25, may_checkpoint=False).checkpointed == 0


def test_micro_batch_auto_takes_the_fastest_fitting_micro_batch() -> None:
    # at 25 GiB: micro 1 fits with nothing checkpointed; micro 2 (2 GiB a kept layer) needs 6 layers checkpointed;
    # the planner weighs recompute against a busier GPU by the predicted rate
    choice = pick(25, micro_batches=[4, 2, 1], seq=256)
    rates = {m: efficiency(m * 256) / pick(25, micro_batches=[m], seq=256).hardware_flops for m in (4, 2, 1)}
    assert choice.micro_batch == max(rates, key=rates.get)
    assert choice.micro_batch > 1  # 256 tokens leave the GPU mostly idle: a larger micro-batch pays


def test_the_7b_shape_choices_on_an_h200_and_at_16_gib() -> None:
    sizes = activation_sizes(LLAMA2_7B, base=4.2 * GIB)
    h200 = budget_from_free(139 * GIB, 139 * GIB) + 4.2 * GIB
    for seq, batch in ((2048, 4), (2048, 8), (8192, 1)):
        choice = choose(LLAMA2_7B, sizes, h200, seq=seq, micro_batches=[batch], lora_r=16, peak_flops=peak_flops("H200"))
        assert choice.checkpointed == 0  # 38-71 GiB: the H200 holds every activation
    at16 = choose(LLAMA2_7B, sizes, 16 * GIB, seq=8192, micro_batches=[1], lora_r=16)
    assert 0 < at16.checkpointed < 32 and at16.peak_bytes <= 16 * GIB  # a 7B run at 8192 fits 16 GiB, partly
    h100 = budget_from_free(79 * GIB, 80 * GIB) + 4.2 * GIB
    assert choose(LLAMA2_7B, sizes, h100, seq=2048, micro_batches=[8], lora_r=16).checkpointed > 0  # 80 GB: not all


def test_memory_left_with_nothing_recomputed_holds_4bit_weights_dequantized() -> None:
    dense = Sizes(base=10 * GIB, kept=1 * MB, layer_input=0.1 * MB, head=0, dense_layer=0.5 * GIB)
    at = lambda budget: choose(TOY, dense, budget * GIB, seq=1024, micro_batches=[1], lora_r=8)  # noqa: E731
    # nothing checkpointed needs 20 GiB; each layer held dequantized 0.5 GiB more
    assert (at(22.2).checkpointed, at(22.2).dense) == (0, 4)
    assert at(22.2).peak_bytes == pytest.approx(22 * GIB) and "weights of 4 layers held dequantized" in at(22.2).describe()
    assert at(100).dense == 10  # never more than the model's layers
    assert at(20).dense == 0
    # memory buys recompute first: with a layer checkpointed, nothing is held dequantized
    assert (at(16).checkpointed, at(16).dense) == (5, 0)
    assert pick(100).dense == 0  # no 4-bit weights to hold (dense_layer 0)


def test_the_7b_layer_held_dequantized_is_its_seven_linear_layers_in_bf16() -> None:
    per_layer = 4 * 4096 * 4096 + 3 * 4096 * 11008
    assert dense_layer_bytes(LLAMA2_7B, "all-linear") == 2 * per_layer
    assert dense_layer_bytes(LLAMA2_7B, ["q_proj", "v_proj"]) == 2 * 2 * 4096 * 4096
    sizes = activation_sizes(LLAMA2_7B, base=4.2 * GIB, dense_layer=dense_layer_bytes(LLAMA2_7B, "all-linear"))
    h200 = budget_from_free(139 * GIB, 139 * GIB) + 4.2 * GIB
    assert choose(LLAMA2_7B, sizes, h200, seq=2048, micro_batches=[8], lora_r=16).dense == 32  # 71 + 12 GiB fit
    h100 = budget_from_free(79 * GIB, 80 * GIB) + 4.2 * GIB
    assert choose(LLAMA2_7B, sizes, h100, seq=2048, micro_batches=[8], lora_r=16).dense == 0


def test_flops_per_token_of_the_7b_shape() -> None:
    flops = flops_per_token(LLAMA2_7B, 2048, lora_r=16, checkpointed_layers=32)
    matmul = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008) + 4096 * 32000  # decoder layers and LM head
    lora = 32 * 16 * (4 * (4096 + 4096) + 3 * (4096 + 11008))
    attention = 32 * 2 * 4096 * 2048
    assert flops.model == pytest.approx(4 * matmul + 6 * lora + 3 * attention)
    assert flops.recompute == pytest.approx(2 * (matmul - 4096 * 32000) + 2 * lora + attention)
    full = flops_per_token(LLAMA2_7B, 2048, lora_r=None)
    assert full.model == pytest.approx(6 * matmul + 3 * attention) and full.recompute == 0
    use = flops.utilisation(12_009, peak_flops("NVIDIA H200"))
    assert use["mfu"] == pytest.approx(12_009 * flops.model / 989.4e12) and use["hfu"] > use["mfu"]


def test_peak_flops_by_device_name() -> None:
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989.4e12
    assert peak_flops("NVIDIA H100 PCIe") == 756.5e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("NVIDIA L4") == 121e12 and peak_flops("NVIDIA L40S") == pytest.approx(362.1e12)
    assert peak_flops("Tesla V100-SXM2-16GB") is None and peak_flops("cpu") is None and peak_flops(None) is None


# ------------------------------------------------------------------- partly checkpointed model, on the CPU
def lora_llama4(folder: Path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from forge.model.tiny import tiny_llama
    from harness_speed import random_texts

    shape = {"hidden_size": 32, "num_layers": 4, "num_heads": 4, "intermediate_size": 64, "vocab_size": 256}
    path = tiny_llama(shape, random_texts(40, seed=0), root=folder / "cache")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
    torch.manual_seed(2)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.2, target_modules="all-linear"))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05, generator=generator)
    ids = torch.randint(4, model.config.vocab_size, (2, 16), generator=generator)
    return model, ids


def gradients(model, ids):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)  # the same dropout masks
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_a_partly_checkpointed_model_gets_the_gradients_of_the_unchecked_one(tmp_path: Path) -> None:
    from transformers.modeling_layers import GradientCheckpointingLayer

    from forge.train import offload

    model, ids = lora_llama4(tmp_path)
    model.train()
    loss_ref, ref = gradients(model, ids)  # no checkpointing anywhere
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    # the first 3 of 4 layers checkpointed, the first 2 of those through the offload's stash (in place on the CPU)
    installer = offload.Installer(model, torch.device("cpu"), offload=True, checkpointed=3, offloaded=2)
    assert installer.install() == 3
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    assert [m.gradient_checkpointing for m in layers] == [True, True, True, False]
    stashed = [getattr(m._gradient_checkpointing_func, "forge_stash", None) is not None for m in layers[:3]]
    assert stashed == [True, True, False]
    recomputed = []
    for i, layer in enumerate(layers):
        # the checkpoint reruns the layer's forward, not its __call__: its MLP's hooks see each run
        layer.mlp.register_forward_pre_hook(lambda module, args, i=i: recomputed.append(i))
    loss, got = gradients(model, ids)
    assert sorted(recomputed) == [0, 0, 1, 1, 2, 2, 3]  # the checkpointed layers ran twice, the last once
    assert loss == pytest.approx(loss_ref, rel=1e-6)
    assert set(got) == set(ref) and any("lora_A" in n for n in got)
    for name in ref:
        assert torch.allclose(got[name], ref[name], rtol=1e-5, atol=1e-7), name
    # the trainer turns checkpointing on for every layer when training begins; the callback restores the plan
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert all(m.gradient_checkpointing for m in layers)
    installer.callback().on_train_begin(None, None, None)
    assert [m.gradient_checkpointing for m in layers] == [True, True, True, False]
