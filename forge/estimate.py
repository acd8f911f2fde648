"""A rough GPU-memory estimate for a recipe, made without torch and without the network.

The model's shape comes from a local config.json, the tiny-model settings, or a table of well-known
architectures; anything else is reported as unknown rather than guessed.
"""
from __future__ import annotations

import json
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any, Callable

from forge.recipe.rules import sharded_engine
from forge.recipe.schema import Recipe

GIB = 1024**3
OFFLOAD_STASH = 5  # layer inputs on the device under offload: TRL's stash (DDP) holds 5; Forge's own, 1-2 in flight
FUSED_HEAD_TOKENS = 4096  # tokens per tile of TRL's fused LM head


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int


# Shapes of common base models, so a plan for a hub id can be estimated offline.
KNOWN_SHAPES = {
    "meta-llama/Llama-2-7b-hf": Shape(4096, 32, 32, 32, 11008, 32000),
    "meta-llama/Llama-2-13b-hf": Shape(5120, 40, 40, 40, 13824, 32000),
    "meta-llama/Llama-2-70b-hf": Shape(8192, 80, 64, 8, 28672, 32000),
    "meta-llama/Meta-Llama-3-8B": Shape(4096, 32, 32, 8, 14336, 128256),
    "meta-llama/Llama-3.1-8B": Shape(4096, 32, 32, 8, 14336, 128256),
    "mistralai/Mistral-7B-v0.1": Shape(4096, 32, 32, 8, 14336, 32000),
    "forge:smollm2-135m": Shape(576, 30, 9, 3, 1536, 49152),  # SmolLM2-135M, as the GGUF file's header says
}
for _name in list(KNOWN_SHAPES):
    KNOWN_SHAPES[_name.replace("-hf", "-chat-hf")] = KNOWN_SHAPES[_name]


def model_shape(recipe: Recipe) -> Shape | None:
    m = recipe.model
    if m.name_or_path.startswith("forge:") and m.name_or_path not in KNOWN_SHAPES:  # the built tiny models
        t = m.tiny
        return Shape(t.hidden_size, t.num_layers, t.num_heads, t.num_heads, t.intermediate_size, t.vocab_size)
    config = Path(m.name_or_path) / "config.json"
    try:
        if not config.is_file():
            return KNOWN_SHAPES.get(m.name_or_path)
        c = json.loads(config.read_text(encoding="utf-8"))
        shape = Shape(c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"],
                      c.get("num_key_value_heads", c["num_attention_heads"]),
                      c.get("intermediate_size", 4 * c["hidden_size"]), c["vocab_size"])
    except (OSError, ValueError, KeyError, TypeError):  # also a name too long for a path: no estimate
        return None
    # a config with a zero, negative or non-integer size gives no estimate (rather than a division by zero)
    return shape if all(isinstance(v, int) and v > 0 for v in astuple(shape)) else None


def _linear_shapes(s: Shape) -> dict[str, tuple[int, int]]:
    head_dim = s.hidden // s.heads
    kv = s.kv_heads * head_dim
    return {"q_proj": (s.hidden, s.hidden), "k_proj": (s.hidden, kv), "v_proj": (s.hidden, kv),
            "o_proj": (s.hidden, s.hidden), "gate_proj": (s.hidden, s.intermediate),
            "up_proj": (s.hidden, s.intermediate), "down_proj": (s.intermediate, s.hidden)}


# Trainable parameters of a module PEFT copies, trains fully and saves (lora.modules_to_save), by the name the
# recipe gives it. PEFT matches a name against the end of each module's path, without a dot: "norm" is the
# final norm and every layer's input_layernorm and post_attention_layernorm too.
SAVED_MODULES: dict[str, Callable[[Shape, Recipe], int]] = {
    "embed_tokens": lambda s, r: s.vocab * s.hidden,
    "lm_head": lambda s, r: s.vocab * s.hidden,
    "score": lambda s, r: s.hidden * r.model.num_labels,
    "norm": lambda s, r: (2 * s.layers + 1) * s.hidden,
    "input_layernorm": lambda s, r: s.layers * s.hidden,
    "post_attention_layernorm": lambda s, r: s.layers * s.hidden,
}


def saved_modules_params(recipe: Recipe, s: Shape) -> tuple[int, list[str]]:
    """(trainable parameters of lora.modules_to_save, the names the estimate cannot size)."""
    names = recipe.lora.modules_to_save if recipe.lora.enabled else []
    unknown = [name for name in names if name not in SAVED_MODULES]
    return sum(SAVED_MODULES[name](s, recipe) for name in names if name in SAVED_MODULES), unknown


def estimate_memory(recipe: Recipe) -> dict[str, Any]:
    """Bytes of weights, adapter training state and activations for one device at the planned batch."""
    s = model_shape(recipe)
    if s is None:
        return {"known": False, "reason": f"shape of {recipe.model.name_or_path!r} unknown offline"}
    try:
        return _estimate(recipe, s)
    except OverflowError:  # sizes no GPU could hold (a huge config value): say so rather than crash
        return {"known": False, "reason": "the sizes are too large to estimate"}


def _estimate(recipe: Recipe, s: Shape) -> dict[str, Any]:
    linears = _linear_shapes(s)
    linear_params = s.layers * sum(i * o for i, o in linears.values())
    embed_params = 2 * s.vocab * s.hidden  # input embeddings and lm_head, never quantized
    total = linear_params + embed_params + s.layers * 2 * s.hidden
    q = recipe.quantization.mode
    bytes_per_linear = {"4bit": 0.5 + 0.127 / 8 * (1 if recipe.quantization.double_quant else 4), "8bit": 1.0,
                        "none": 2.0}[q]
    half = 4 if recipe.model.dtype == "float32" else 2
    weights = linear_params * bytes_per_linear + (total - linear_params) * half

    lora = recipe.lora
    if lora.enabled:
        targets = linears if lora.target_modules == "all-linear" else {
            k: v for k, v in linears.items() if k in lora.target_modules}
        trainable = s.layers * sum(lora.r * (i + o) for i, o in targets.values())
        saved, unsized = saved_modules_params(recipe, s)
        trainable += saved
    else:
        trainable, unsized = total, []
    state = trainable * (4 + 4 + 8)  # fp32 weights, grads, Adam moments

    t = recipe.training
    batch = 1 if t.micro_batch_size == "auto" else t.micro_batch_size
    tokens = batch * t.max_seq_length
    if t.gradient_checkpointing:  # saved layer inputs + one layer recomputed at a time
        # activation offload (auto on a GPU) keeps only a few saved inputs on the device
        offload = t.speed.activation_offload is True or (
            t.speed.activation_offload == "auto" and recipe.distribution.strategy in ("none", "ddp"))
        saved = min(s.layers, OFFLOAD_STASH) if offload else s.layers
        activations = tokens * s.hidden * half * saved + tokens * (10 * s.hidden + 3 * s.intermediate) * half
    else:
        activations = tokens * (12 * s.hidden + 3 * s.intermediate) * half * s.layers
    if recipe.model.task == "causal_lm" and t.loss in ("causal_lm", "completion_only"):
        logits = min(tokens, FUSED_HEAD_TOKENS) * s.vocab * 4  # TRL's fused LM head: one fp32 tile at a time
    else:
        logits = tokens * s.vocab * 4 * 2  # fp32 logits and their gradient
    peak = weights + state + activations + logits
    memory = memory_choice(recipe, s, weights + state)
    return {
        "known": True,
        "parameters": total,
        "trainable_parameters": trainable,
        "weights_gib": round(weights / GIB, 2),
        "optimizer_and_grads_gib": round(state / GIB, 2),
        "activations_gib": round((activations + logits) / GIB, 2),
        "peak_gib": round(peak / GIB, 2),
        "tokens_per_micro_batch": tokens,
        "note": "rough estimate for one GPU with training.speed as planned (measured on a 7B QLoRA run: "
                "within 15 % above the peak allocated)"
                + (f"; lora.modules_to_save {', '.join(unsized)} not counted (size unknown)" if unsized else ""),
        "memory_plan": memory,
    }


def memory_choice(recipe: Recipe, s: Shape, base: float) -> dict[str, Any]:
    """`training.memory` as `forge plan` shows it: for a size, the setting Forge picks (predicted peak, and
    tokens/s on an H100/H200-class GPU); for auto, the two ends between which `forge run` picks on the device."""
    from forge.flops import peak_flops
    from forge.memory_plan import activation_sizes, choose, dense_layer_bytes, smallest
    from forge.sizes import parse_size

    t = recipe.training
    if t.memory == "off" or recipe.model.task != "causal_lm" or sharded_engine(recipe):
        return {"budget": t.memory if t.memory == "off" else "off (causal LMs on one process or DDP only)"}
    micro = [t.micro_batch_size] if t.micro_batch_size != "auto" else _micro_options(
        t.effective_batch_size or t.gradient_accumulation_steps)
    lora = recipe.lora
    fused = t.speed.fused_lora is not False and lora.enabled
    dense = dense_layer_bytes(s, lora.target_modules) if fused and recipe.quantization.mode == "4bit" else 0.0
    sizes = activation_sizes(s, base=base, liger=t.speed.liger_kernels is not False, fused_lora=fused,
                             dense_layer=dense)
    common = dict(seq=t.max_seq_length, lora_r=lora.r if lora.enabled else None,
                  lora_targets=lora.target_modules if lora.enabled else None)
    offload = t.speed.activation_offload is not False and recipe.distribution.strategy in ("none", "ddp")
    least = smallest(s, sizes, micro_batch=micro[-1], may_checkpoint=t.gradient_checkpointing, may_offload=offload,
                     **common)
    fastest = choose(s, sizes, float("inf"), micro_batches=micro, peak_flops=peak_flops("H100"), **common)
    out: dict[str, Any] = {"budget": t.memory, "least": least.describe(),
                           "note": "peaks of allocated memory; tokens/s predicted for a 989 TFLOP/s (H100/H200) GPU"}
    if t.memory == "auto":
        out["fastest"] = fastest.describe() if fastest else None
        out["choice"] = "at run time, from the device's free memory (between the two above)"
        return out
    choice = choose(s, sizes, parse_size(t.memory), micro_batches=micro, peak_flops=peak_flops("H100"),
                    may_checkpoint=t.gradient_checkpointing, may_offload=offload,
                    must_offload=t.speed.activation_offload is True, **common)
    out["choice"] = choice.describe() if choice else f"nothing fits {t.memory} (the least is above)"
    return out


def _micro_options(effective: int) -> list[int]:
    return [size for size in (2**k for k in range(21)) if size <= effective and effective % size == 0][::-1]
