"""`training.memory`: from a memory budget, the model's shape, the sequence length and the activation sizes,
the fastest setting that fits: how many decoder layers are checkpointed (none, the first n, all), how many of
their inputs wait in CPU memory, and the micro-batch. Pure (no torch): `forge plan` shows the choice for a size,
`forge run` makes it again on the device, from what is free there and what the loaded model measured.

Memory, per token of a micro-batch (bytes): a layer that is not checkpointed keeps its activations (`kept`,
about 2 x (8.5 hidden + 3 intermediate) with Liger and fused LoRA, measured on the 7B shape: 69.2 GiB at 8 x 2048
without checkpointing); a checkpointed layer keeps its input (2 x hidden) on the GPU, or nothing once that input
is offloaded (one or two inputs in flight); recomputing a layer in the backward pass holds about 1.2 x `kept`.
The first n layers are the checkpointed ones: the backward pass reaches them last, once the activations of the
layers after them are freed, so their recompute never adds to the others' peak.

Speed: fewer recomputed layers first (each costs its forward again), then fewer offloaded inputs, then the
micro-batch that keeps the GPU busiest; the prediction divides the achieved share of the GPU's peak (calibrated
on the H100/H200 measurements: about half at 8,192 tokens a micro-batch and more) by the hardware FLOPs per token.
With no layer recomputed and memory left over, the 4-bit weights of as many layers as fit are held dequantized
(`dense_layer` bytes a layer): each pass then skips their dequantization (2 % of a 7B step on an H200). Memory goes
to activations first: a recomputed layer costs a third of its work, a dequantized one about 2 %.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from forge.estimate import Shape, _linear_shapes
from forge.flops import flops_per_token

GIB = 2**30
IN_FLIGHT = 2  # offloaded inputs on the GPU at once: the newest kept, the next one coming back
RECOMPUTE_FACTOR = 1.2  # a recomputed layer's activations plus its gradients' working memory, of `kept`
FRAGMENTATION = 1.2  # the allocator's reserved peak over the allocated peak (8.2 / 6.9 GiB measured at 8 x 2048)
MARGIN_BYTES = 1 * GIB  # left free under `auto`: CUDA's context growth, library workspaces
FUSED_HEAD_TOKENS = 4096  # tokens per tile of TRL's fused LM head (fp32 logits of one tile)
EFFICIENCY = 0.53  # share of peak bf16 FLOP/s a large micro-batch reaches (H100/H200, 7B QLoRA, 2026-11/12)
EFFICIENCY_TOKENS = 800  # tokens per micro-batch at which half of that share is reached


@dataclass(frozen=True)
class Sizes:
    """Bytes per token of one micro-batch, and the fixed bytes (weights, adapters, optimizer state)."""

    base: float
    kept: float  # activations a layer keeps when it is not checkpointed
    layer_input: float  # a checkpointed layer's input
    head: float  # the LM head's working memory for one tile, in bytes (not per token)
    dense_layer: float = 0.0  # one layer's 4-bit weights held dequantized, in bytes (0: nothing to hold)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def activation_sizes(shape: Shape, *, base: float, liger: bool = True, fused_lora: bool = True,
                     dtype_bytes: int = 2, dense_layer: float = 0.0) -> Sizes:
    """The sizes of a LLaMA-style layer: with Liger's kernels and fused LoRA it keeps about 8.5 x hidden +
    3 x intermediate values per token (inputs of the norms, projections and attention, the gate and up outputs);
    PEFT's separate LoRA passes and unfused SwiGLU keep more."""
    values = 8.5 * shape.hidden + 3 * shape.intermediate
    if not liger:
        values += 2 * shape.intermediate + 2 * shape.hidden
    if not fused_lora:
        values += 4 * shape.hidden
    return Sizes(base=base, kept=values * dtype_bytes, layer_input=shape.hidden * dtype_bytes,
                 head=FUSED_HEAD_TOKENS * shape.vocab * 4, dense_layer=dense_layer)


def dense_layer_bytes(shape: Shape, lora_targets: Any, dtype_bytes: int = 2) -> float:
    """One layer's LoRA-targeted weights dequantized (in the compute dtype): what holding them costs."""
    linears = _linear_shapes(shape)
    targets = linears if lora_targets in (None, "all-linear") else {k: v for k, v in linears.items()
                                                                    if k in set(lora_targets)}
    return float(sum(i * o for i, o in targets.values()) * dtype_bytes)


@dataclass(frozen=True)
class Choice:
    """One setting: `checkpointed` of `layers` decoder layers (the first ones), `offloaded` of those layers'
    inputs in CPU memory (the first ones), the micro-batch, and what it is predicted to cost."""

    layers: int
    checkpointed: int
    offloaded: int
    micro_batch: int
    seq: int
    peak_bytes: float
    hardware_flops: float
    model_flops: float
    tokens_per_second: float | None = None
    dense: int = 0  # layers whose 4-bit weights are held dequantized (the last ones)

    @property
    def tokens(self) -> int:
        return self.micro_batch * self.seq

    def pattern(self) -> str:
        if self.checkpointed == 0:
            return "none"
        if self.checkpointed == self.layers:
            return "all"
        return f"first {self.checkpointed}"

    def describe(self) -> str:
        ckpt = {"none": "no layer checkpointed", "all": f"all {self.layers} layers checkpointed"}.get(
            self.pattern(), f"the first {self.checkpointed} of {self.layers} layers checkpointed")
        held = f", the 4-bit weights of {self.dense} layers held dequantized" if self.dense else ""
        text = f"{ckpt}, {self.offloaded} inputs offloaded{held}, micro-batch {self.micro_batch} x {self.seq}: " \
               f"peak {self.peak_bytes / GIB:.1f} GiB"
        if self.tokens_per_second:
            text += f", ~{self.tokens_per_second:,.0f} tokens/s"
        return text + f", {self.hardware_flops / 1e9:.1f} GFLOP/token ({self.model_flops / 1e9:.1f} model)"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "pattern": self.pattern()}


def peak_bytes(sizes: Sizes, layers: int, checkpointed: int, offloaded: int, tokens: int, dense: int = 0) -> float:
    """The predicted peak of allocated memory: at the turn from forward to backward (every kept activation and
    the LM head's tile), or while the checkpointed layers are recomputed (the others' activations freed by then)."""
    on_gpu_inputs = (checkpointed - offloaded + min(offloaded, IN_FLIGHT)) * sizes.layer_input * tokens
    base = sizes.base + dense * sizes.dense_layer
    turn = base + (layers - checkpointed) * sizes.kept * tokens + on_gpu_inputs + sizes.head
    if checkpointed == 0:
        return turn
    recompute = base + on_gpu_inputs + RECOMPUTE_FACTOR * sizes.kept * tokens
    return max(turn, recompute)


def efficiency(tokens: int) -> float:
    """The share of the GPU's peak a micro-batch of `tokens` keeps busy (small ones leave it waiting on Python)."""
    return EFFICIENCY * tokens / (tokens + EFFICIENCY_TOKENS)


def choose(shape: Shape, sizes: Sizes, budget: float, *, seq: int, micro_batches: list[int],
           lora_r: int | None, lora_targets: Any = None, may_checkpoint: bool = True, may_offload: bool = True,
           must_offload: bool = False, peak_flops: float | None = None) -> Choice | None:
    """The fastest setting whose predicted peak fits `budget` bytes, or None when none fits. micro_batches: the
    sizes allowed (one, or those that divide the effective batch)."""
    best: Choice | None = None
    for micro in micro_batches:
        choice = _fastest_for(shape, sizes, budget, seq, micro, lora_r, lora_targets, may_checkpoint, may_offload,
                              must_offload, peak_flops)
        if choice is not None and (best is None or _rank(choice) > _rank(best)):
            best = choice
    return best


def smallest(shape: Shape, sizes: Sizes, *, seq: int, micro_batch: int, lora_r: int | None, lora_targets: Any = None,
             may_checkpoint: bool = True, may_offload: bool = True) -> Choice:
    """The setting that needs the least memory (every layer checkpointed, every input offloaded where allowed)."""
    c = shape.layers if may_checkpoint else 0
    m = c if may_offload else 0
    return _choice(shape, sizes, seq, micro_batch, c, m, lora_r, lora_targets, None)


def _fastest_for(shape: Shape, sizes: Sizes, budget: float, seq: int, micro: int, lora_r: int | None,
                 lora_targets: Any, may_checkpoint: bool, may_offload: bool, must_offload: bool,
                 peak_flops: float | None) -> Choice | None:
    layers, tokens = shape.layers, micro * seq
    for c in range(0, layers + 1) if may_checkpoint else [0]:
        for m in ([c] if must_offload else range(0, c + 1) if may_offload else [0]):
            peak = peak_bytes(sizes, layers, c, m, tokens)
            if peak <= budget:
                dense = _dense_layers(sizes, budget - peak, layers) if c == 0 else 0
                return _choice(shape, sizes, seq, micro, c, m, lora_r, lora_targets, peak_flops, dense)
    return None


def _dense_layers(sizes: Sizes, spare: float, layers: int) -> int:
    """How many layers' 4-bit weights the memory left over holds dequantized."""
    if sizes.dense_layer <= 0:
        return 0
    return layers if spare == float("inf") else max(0, min(layers, int(spare // sizes.dense_layer)))


def _choice(shape: Shape, sizes: Sizes, seq: int, micro: int, c: int, m: int, lora_r: int | None, lora_targets: Any,
            peak_flops: float | None, dense: int = 0) -> Choice:
    flops = flops_per_token(shape, seq, lora_r=lora_r, lora_targets=lora_targets, checkpointed_layers=c)
    tps = efficiency(micro * seq) * peak_flops / flops.hardware if peak_flops else None
    return Choice(layers=shape.layers, checkpointed=c, offloaded=m, micro_batch=micro, seq=seq,
                  peak_bytes=peak_bytes(sizes, shape.layers, c, m, micro * seq, dense), hardware_flops=flops.hardware,
                  model_flops=flops.model, tokens_per_second=tps, dense=dense)


def _rank(choice: Choice) -> tuple[float, ...]:
    # the predicted rate up to the GPU's peak (the same for every choice): busier micro-batches, fewer FLOPs
    speed = efficiency(choice.tokens) / choice.hardware_flops
    return (speed, -choice.offloaded, choice.dense)


def budget_from_free(free_bytes: float, total_bytes: float) -> float:
    """`auto`'s budget for the allocated peak: the device's free memory less a margin (a gibibyte or 3 % of the
    device, whichever is more), over the allocator's cache (reserved memory runs up to ~1.2 x allocated)."""
    return max(0.0, (free_bytes - max(MARGIN_BYTES, 0.03 * total_bytes)) / FRAGMENTATION)
