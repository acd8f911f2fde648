"""`training.memory` on the device: the budget (what the GPU has free, or the recipe's size), the setting that
fits it (forge/memory_plan.py) made from the loaded model's measured size, a clear error before loading when the
GPU is too crowded for even the smallest setting, and the run's predicted against measured peak.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from forge.estimate import Shape, model_shape
from forge.memory_plan import (MARGIN_BYTES, Choice, Sizes, activation_sizes, budget_from_free, choose,
                               smallest)
from forge.model.errors import ForgeRuntimeError
from forge.recipe.schema import Recipe
from forge.sizes import GIB, gib, parse_size


@dataclass
class MemoryPlan:
    """The choice for this run, the budget it was made for and where that budget came from."""

    choice: Choice
    budget: float
    source: str
    sizes: Sizes
    device: str | None = None

    def summary(self, measured_peak: int | None) -> dict[str, Any]:
        out = {"budget_bytes": int(self.budget), "budget": self.source, "choice": self.choice.to_dict(),
               "describe": self.choice.describe(), "predicted_peak_bytes": int(self.choice.peak_bytes),
               "measured_peak_bytes": measured_peak, "sizes": self.sizes.to_dict()}
        if measured_peak:
            out["measured_over_predicted"] = round(measured_peak / self.choice.peak_bytes, 3)
        return out


def planned(recipe: Recipe, *, cuda: bool, engine: str, world: int) -> bool:
    """Whether Forge plans the memory of this run: a causal LM on CUDA in one process (DeepSpeed and FSDP place
    memory themselves; under DDP every layer is checkpointed as before), training.memory not off."""
    return cuda and world == 1 and recipe.training.memory != "off" and recipe.model.task == "causal_lm" and \
        engine == "none"


def _options(recipe: Recipe) -> list[int]:
    t = recipe.training
    if t.micro_batch_size != "auto":
        return [t.micro_batch_size]
    effective = t.effective_batch_size or t.gradient_accumulation_steps
    return [size for size in (2**k for k in range(21)) if size <= effective and effective % size == 0][::-1]


def _common(recipe: Recipe) -> dict[str, Any]:
    lora = recipe.lora
    return dict(seq=recipe.training.max_seq_length, lora_r=lora.r if lora.enabled else None,
                lora_targets=lora.target_modules if lora.enabled else None)


def check_before_load(recipe: Recipe, speed: Any, estimate: dict[str, Any]) -> str | None:
    """Before minutes of loading: a one-line error when the GPU, as crowded as it is now, cannot hold even the
    smallest setting (estimated from the recipe); returns a note on what is free."""
    import torch

    shape = model_shape(recipe)
    if shape is None or not estimate.get("known"):
        return None
    free, total = torch.cuda.mem_get_info()
    base = (estimate["weights_gib"] + estimate["optimizer_and_grads_gib"]) * GIB
    sizes = activation_sizes(shape, base=base, liger=speed.liger_kernels, fused_lora=speed.fused_lora)
    least = smallest(shape, sizes, micro_batch=_options(recipe)[-1], may_checkpoint=recipe.training.gradient_checkpointing,
                     may_offload=speed.activation_offload, **_common(recipe))
    usable = free - max(MARGIN_BYTES, 0.03 * total)
    if least.peak_bytes > usable:
        raise ForgeRuntimeError(
            f"the GPU has {gib(free)} free of {gib(total)} (other processes hold the rest), and this run needs about "
            f"{gib(least.peak_bytes)} even with {least.describe().split(':')[0]}",
            "free the GPU (nvidia-smi lists who holds it), or lower training.max_seq_length or the micro-batch",
            doc="out-of-memory")
    return f"memory: {gib(free)} free of {gib(total)} before loading"


def shape_of(model: Any) -> Shape | None:
    """The loaded model's shape, read from its config (a PEFT-wrapped model's too)."""
    config = getattr(model, "config", None)
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    try:
        hidden, heads = int(config.hidden_size), int(config.num_attention_heads)
        return Shape(hidden, int(config.num_hidden_layers), heads, int(getattr(config, "num_key_value_heads", None)
                                                                       or heads),
                     int(getattr(config, "intermediate_size", None) or 4 * hidden), int(config.vocab_size))
    except (AttributeError, TypeError, ValueError):
        return None


def plan_after_load(recipe: Recipe, model: Any, speed: Any, notes: list[str]) -> MemoryPlan | None:
    """The setting for this run, from the memory the loaded model takes (its weights, and for its trainable
    parameters their gradients and two Adam moments to come), what the GPU has free now, and the budget."""
    import torch

    from forge.flops import peak_flops

    shape = shape_of(model)
    if shape is None:
        notes.append("memory: the model's shape is unknown; checkpointing as training.gradient_checkpointing says")
        return None
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    allocated = torch.cuda.memory_allocated()
    free, total = torch.cuda.mem_get_info()
    base = allocated + 3 * trainable
    room = allocated + budget_from_free(free, total)
    t = recipe.training
    if t.memory == "auto":
        budget, source = room, f"auto: {gib(room)} ({gib(free)} free of {gib(total)}, less a margin)"
    else:
        budget, source = float(parse_size(t.memory)), t.memory
        if budget > room:  # another process holds part of the GPU: more checkpointing rather than running out
            notes.append(f"memory: training.memory is {t.memory}, but only {gib(room)} is free to plan for "
                         "(other processes hold the rest); planning for that")
            budget, source = room, f"{t.memory}, lowered to the {gib(room)} free"
    from forge.train.speed import dense_layer_bytes

    sizes = activation_sizes(shape, base=base, liger=speed.liger_kernels, fused_lora=speed.fused_lora,
                             dense_layer=dense_layer_bytes(model))  # 0 without fused 4-bit layers
    device = torch.cuda.get_device_name()
    choice = choose(shape, sizes, budget, micro_batches=_options(recipe), may_checkpoint=t.gradient_checkpointing,
                    may_offload=speed.activation_offload, must_offload=t.speed.activation_offload is True,
                    peak_flops=peak_flops(device), **_common(recipe))
    if choice is None:
        least = smallest(shape, sizes, micro_batch=_options(recipe)[-1], may_checkpoint=t.gradient_checkpointing,
                         may_offload=speed.activation_offload, **_common(recipe))
        raise ForgeRuntimeError(
            f"training.memory: nothing fits {source}: the smallest setting ({least.describe().split(':')[0]}) "
            f"needs about {gib(least.peak_bytes)}",
            "raise training.memory (or use auto), lower training.max_seq_length or the micro-batch, or turn on "
            "gradient_checkpointing", doc="out-of-memory")
    notes.append(f"memory: {choice.describe()} (budget {source})")
    return MemoryPlan(choice=choice, budget=budget, source=source, sizes=sizes, device=device)


def flops_for(recipe: Recipe, model: Any, *, checkpointed: int | None, cuda: bool) -> tuple[Any, float | None]:
    """(FLOPs per token of this run, the device's peak bf16 FLOP/s or None): `checkpointed` layers recomputed
    (None: all of them)."""
    from forge.flops import flops_per_token, peak_flops

    shape = shape_of(model)
    if shape is None or recipe.model.task != "causal_lm":
        return None, None
    lora = recipe.lora
    flops = flops_per_token(shape, recipe.training.max_seq_length, lora_r=lora.r if lora.enabled else None,
                            lora_targets=lora.target_modules if lora.enabled else None,
                            checkpointed_layers=shape.layers if checkpointed is None else checkpointed)
    if not cuda:
        return flops, None
    import torch

    return flops, peak_flops(torch.cuda.get_device_name())


def flops_summary(flops: Any, peak: float | None, tokens_per_second: float | None) -> dict[str, Any] | None:
    """summary.json's `flops`: per token (model, recompute, hardware), the device's peak, MFU and HFU."""
    if flops is None:
        return None
    return {**flops.to_dict(), "peak_flops": peak, **flops.utilisation(tokens_per_second, peak),
            "note": "model FLOPs: forward 2 per weight, backward 2 per frozen weight (input gradients) and 4 per "
                    "trained one, causal attention over full rows of max_seq_length; hardware adds the recompute"}
