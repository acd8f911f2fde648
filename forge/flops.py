"""FLOPs per trained token and the model FLOPs utilisation (MFU) they give against a GPU's peak, without torch.

Model FLOPs count the work the step must do: every matrix product's forward (2 FLOPs per weight and token), the
backward's input gradients through every weight (2 per weight; frozen weights need no weight gradient) and the
weight gradients of the trainable ones (2 more), and causal attention (QK^T and AV: 2 x hidden x sequence per
layer and token forward, twice that backward). Hardware FLOPs add what checkpointing recomputes: the forward of
each checkpointed layer again. MFU = model FLOPs x tokens/s / peak; HFU the same with hardware FLOPs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from forge.estimate import Shape, _linear_shapes

# Dense bfloat16 tensor-core peaks from the vendors' data sheets, TFLOP/s (no sparsity); the first name that the
# device's name contains wins, so the longer names come first
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.4), ("H200", 989.4), ("H100 NVL", 835.5), ("H100 PCIe", 756.5), ("H100", 989.4),
    ("H800", 989.4), ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.1), ("L4", 121.0),
    ("A10G", 70.0), ("A10", 125.0), ("RTX 6000 Ada", 364.2), ("RTX A6000", 154.8), ("RTX 4090", 165.2),
    ("RTX 3090", 71.0), ("V100", 0.0),  # V100: no bfloat16
)


def peak_flops(device_name: str | None) -> float | None:
    """Peak dense bf16 FLOP/s of the named GPU, or None for one not in the table (or without bf16)."""
    for key, tflops in PEAK_BF16_TFLOPS:
        if device_name and key.lower() in device_name.lower():
            return tflops * 1e12 if tflops else None
    return None


@dataclass(frozen=True)
class Flops:
    """FLOPs per trained token: `model` (the step's own work) and `recompute` (checkpointed layers' forwards)."""

    model: float
    recompute: float

    @property
    def hardware(self) -> float:
        return self.model + self.recompute

    def utilisation(self, tokens_per_second: float | None, peak: float | None) -> dict[str, float | None]:
        if not tokens_per_second or not peak:
            return {"mfu": None, "hfu": None}
        return {"mfu": tokens_per_second * self.model / peak, "hfu": tokens_per_second * self.hardware / peak}

    def to_dict(self) -> dict[str, Any]:
        return {"model_per_token": self.model, "recompute_per_token": self.recompute,
                "hardware_per_token": self.hardware}


def layer_params(shape: Shape, lora_r: int | None, lora_targets: Iterable[str] | str | None) -> tuple[int, int]:
    """(weights of one decoder layer's matrix products, LoRA adapter weights of one layer)."""
    linears = _linear_shapes(shape)
    base = sum(i * o for i, o in linears.values())
    if not lora_r:
        return base, 0
    targets = linears if lora_targets in (None, "all-linear") else {
        k: v for k, v in linears.items() if k in set(lora_targets)}
    return base, sum(lora_r * (i + o) for i, o in targets.values())


def flops_per_token(shape: Shape, seq: int, *, lora_r: int | None, lora_targets: Iterable[str] | str | None = None,
                    checkpointed_layers: int = 0) -> Flops:
    """FLOPs per token of one training step at sequence length `seq` (attention over full rows of `seq`; shorter
    examples cost less attention). lora_r None: full fine-tuning (every weight trained)."""
    base, adapter = layer_params(shape, lora_r, lora_targets)
    head = shape.hidden * shape.vocab
    attention = 2 * shape.hidden * seq  # causal: each token attends to seq / 2 keys on average, QK^T and AV
    trained = 4 if lora_r is None else 2  # backward per frozen weight: input gradient only
    per_layer = 2 * (base + adapter) + attention + trained * base + 4 * adapter + 2 * attention
    model = shape.layers * per_layer + (2 + trained) * head
    recompute = checkpointed_layers * (2 * (base + adapter) + attention)
    return Flops(model=float(model), recompute=float(recompute))
