"""The speed switches of `training.speed`, decided for this machine and applied to a loaded model.

- liger_kernels: Liger's Triton kernels for RMSNorm, RoPE and SwiGLU, patched into the model instance (CUDA).
- fused_lora: base layer and LoRA update as one autograd node: the update added into the base output by
  one in-place addmm, and in the backward the LoRA input gradient added into the base one.
- padding_free: the examples of a micro-batch are concatenated into one row with position_ids; attention runs
  over each example alone through PyTorch's variable-length flash attention (`forge_varlen`, registered with
  transformers' AttentionInterface), or flex/flash attention when the recipe names one.
- activation_offload: the activations kept for the backward pass wait in pinned CPU memory (TRL's
  OffloadActivations, overlapped with compute on a side stream).
- compile: regional torch.compile of each decoder layer.
- fp32_norms: PEFT's k-bit preparation (norms, embeddings and LM head upcast to float32) instead of Forge's,
  which keeps them in the model's dtype.

The loss needs no switch: TRL's SFTTrainer computes it in chunks through a fused LM head, without the full
(tokens x vocabulary) logits.
"""
from __future__ import annotations

import functools
import importlib.util
import inspect
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from forge.model.errors import ForgeRuntimeError

VARLEN = "forge_varlen"
VARLEN_CAPABLE = {"flash_attention_2", "flash_attention_3", "flex_attention", VARLEN}


@dataclass(frozen=True)
class Speed:
    """The switches, decided: every value is a plain on/off (compile: off or regional)."""

    liger_kernels: bool = False
    fused_lora: bool = False
    padding_free: bool = False
    activation_offload: bool = False
    compile: str = "off"
    fp32_norms: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        on = [name for name in ("liger_kernels", "fused_lora", "padding_free", "activation_offload")
              if getattr(self, name)]
        if self.compile != "off":
            on.append(f"compile {self.compile}")
        if self.fp32_norms:
            on.append("fp32 norms")
        return ", ".join(on) or "none"


def liger_installed() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


# regional compile pays where the host's Python per layer, not the GPU, sets the pace: 7B QLoRA on an H100,
# compiled against eager, 1 x 2048 tokens 9,025 against 6,489 tokens/s, 2 x 2048 9,454 against 7,586; from 8192
# tokens on it costs: 4 x 2048 9,840 against 10,646, 1 x 8192 8,820 against 9,206, 8 x 2048 11,239 against 11,384
COMPILE_MAX_TOKENS = 4096


def decide(speed: Mapping[str, Any] | None, *, cuda: bool, task: str = "causal_lm",
           gradient_checkpointing: bool = True, quantized: bool = False, engine: str = "none",
           lora: bool = True, dora: bool = False, zero3: bool = False, tokens: int | None = None) -> Speed:
    """The switches for this machine: auto turns each on where it pays; an explicit `true` that cannot work
    here is a one-line error. `tokens`: the tokens of one micro-batch (None when the micro-batch is chosen
    at run time)."""
    speed = dict(speed or {})
    causal = task == "causal_lm"
    if speed.get("compile", "auto") == "auto":
        small = tokens is not None and tokens <= COMPILE_MAX_TOKENS
        speed["compile"] = "regional" if (cuda and causal and quantized and gradient_checkpointing and small
                                          and engine == "none" and speed.get("liger_kernels", "auto") is not True) \
            else "off"
        if speed["compile"] == "regional":
            speed["liger_kernels"] = False  # Liger's RoPE is kept out of graphs, its other kernels split them

    def switch(name: str, auto: bool, needs: str | None) -> bool:
        value = speed.get(name, "auto")
        if value == "auto":
            return auto
        if value and needs:
            raise ForgeRuntimeError(f"training.speed.{name} is on, but {needs}",
                                    f"set training.speed.{name}: auto (or false)", doc="speed-switches")
        return bool(value)

    liger_missing = None if liger_installed() else "the liger-kernel package is not installed (pip install 'forge-finetune[gpu]')"
    liger = switch("liger_kernels", cuda and causal and liger_missing is None,
                   "it needs a CUDA GPU (Triton kernels)" if not cuda else
                   "it applies to causal LMs only" if not causal else liger_missing)
    # ZeRO-3 gathers a module's parameters only when that module's own forward runs; the fused forward reads
    # lora_A/lora_B's weights from the outer layer, where they are still empty shards
    fused = switch("fused_lora", lora and not dora and not zero3,
                   "it applies to plain LoRA adapters (lora.enabled true, use_dora false)" if not lora or dora else
                   "DeepSpeed ZeRO-3 gathers each layer's weights only inside that layer's own forward" if zero3
                   else None)
    padding_free = switch("padding_free", cuda and causal, None if causal else "it applies to causal LMs only")
    # under DeepSpeed/FSDP the engine owns memory placement: offload there only when asked
    offload = switch("activation_offload", cuda and gradient_checkpointing and engine in ("none", "ddp"),
                     "it needs a CUDA GPU (it moves GPU activations to CPU memory)" if not cuda else None)
    return Speed(liger_kernels=liger, fused_lora=fused, padding_free=padding_free, activation_offload=offload,
                 compile=str(speed["compile"]), fp32_norms=bool(speed.get("fp32_norms", False)) and quantized)


def attention_for(speed: Speed, requested: str | None, *, cuda: bool, packing: bool = False) -> str | None:
    """The attn_implementation to load the model with: padding-free rows (and packed rows on a GPU) need a
    variable-length attention; sdpa would attend over a dense (tokens x tokens) block mask."""
    if not (speed.padding_free or (packing and cuda and requested is None)) or requested in VARLEN_CAPABLE:
        return requested
    if requested not in (None, "sdpa"):
        raise ForgeRuntimeError(f"training.speed.padding_free needs a variable-length attention, and "
                                f"model.attn_implementation is {requested}",
                                "set model.attn_implementation: auto (or flex_attention), or padding_free: false",
                                doc="speed-switches")
    register_varlen_attention()
    return VARLEN


# ------------------------------------------------------------------------------------- variable-length attention
def register_varlen_attention() -> None:
    """Register `forge_varlen` with transformers: PyTorch's varlen flash attention over the examples of a
    padding-free row (cu_seq_lens from the collator); padded batches and the CPU go through sdpa."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(VARLEN, varlen_attention)

    def mask(*args: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
        # a padding-free row carries no attention mask: the sequence bounds travel as cu_seq_lens
        if attention_mask is None:
            return None
        return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)

    ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN, mask)


def varlen_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float | None = None,
                     dropout: float = 0.0, **kwargs: Any) -> tuple[Any, None]:
    """Causal attention over each example of a padding-free row, never across examples.

    query/key/value: (batch, heads, tokens, head_dim); returns (batch, tokens, heads, head_dim)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:  # an ordinary (padded or full) batch
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    if query.shape[0] != 1:
        raise ValueError("padding-free attention expects one row per micro-batch")
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: repeat the key/value heads
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    examples, tokens, longest = cu.shape[0] - 1, query.shape[2], kwargs.get("max_length_q")
    if longest and examples * int(longest) == tokens:  # equal lengths: a plain batch for sdpa (cuDNN on Hopper)
        q, k, v = (t[0].unflatten(1, (examples, int(longest))).transpose(0, 1) for t in (query, key, value))
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling)
        return out.transpose(1, 2).reshape(1, tokens, *out.shape[1:2], out.shape[-1]), None
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (tokens, heads, dim)
    cu = cu.to(device=query.device, dtype=torch.int32)
    if query.is_cuda and query.dtype in (torch.float16, torch.bfloat16):
        max_len = int(kwargs.get("max_length_q") or int((cu[1:] - cu[:-1]).max()))
        out = _varlen_flash(q.contiguous(), k.contiguous(), v.contiguous(), cu, max_len, scaling)
    else:  # CPU or float32: the same function, one example at a time
        bounds = cu.tolist()
        out = torch.cat([
            torch.nn.functional.scaled_dot_product_attention(
                q[a:b].transpose(0, 1), k[a:b].transpose(0, 1), v[a:b].transpose(0, 1), is_causal=True,
                scale=scaling).transpose(0, 1)
            for a, b in zip(bounds[:-1], bounds[1:]) if b > a])
    return out.unsqueeze(0), None


def _varlen_flash(q: Any, k: Any, v: Any, cu: Any, max_len: int, scaling: float | None) -> Any:
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    causal = {"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True}
    return varlen_attn(q, k, v, cu, cu, max_len, max_len, scale=scaling, **causal)


# ------------------------------------------------------------------------------------------------ the model
def apply_liger(model: Any) -> str:
    """Liger's RMSNorm, RoPE and SwiGLU in this (not yet PEFT-wrapped) model; the LM head and loss stay
    TRL's fused, chunked one."""
    import logging

    from liger_kernel.transformers import _apply_liger_kernel_to_instance
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    model_type = getattr(model.config, "model_type", None)
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        return f"liger_kernels: no Liger kernels for model type {model_type}; running without them"
    _apply_liger_kernel_to_instance(model=model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                    fused_linear_cross_entropy=False)
    # Liger looks for optional backends (CuTe DSL, Ascend) at the first call of each kernel and warns, once per
    # process and op, for each one that is not installed; its Triton kernels, the ones used here, need none
    logging.getLogger("liger_kernel.backends.registry").setLevel(logging.ERROR)
    return f"liger_kernels: fused RMSNorm, RoPE and SwiGLU ({model_type})"


LORA_LINEARS = ("Linear", "Linear4bit", "Linear8bitLt")


def fuse_lora(model: Any) -> str:
    """Add each LoRA update into its base layer's output in one in-place matrix product (addmm_), instead of
    PEFT's clone, product, scaling and sum, each a pass over the layer's output. Layers with DoRA, several
    active adapters or merged weights keep PEFT's forward."""
    import types

    from peft.tuners.lora import LoraLayer

    fused, function = 0, _lora_function()
    for module in model.modules():
        if isinstance(module, LoraLayer) and type(module).__name__ in LORA_LINEARS and \
                not hasattr(module, "_forge_peft_forward"):
            module._forge_peft_forward = module.forward
            # the Function class is looked up here, not in the forward: torch.compile would trace the cached
            # factory and stop its graph at every LoRA layer
            module._forge_lora_function = function
            module.forward = types.MethodType(_fused_lora_forward, module)
            fused += 1
    return f"fused_lora: {fused} LoRA layers fused with their base layers"


def _fused_lora_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    import torch

    active = self.active_adapters
    if self.disable_adapters or self.merged or kwargs.get("adapter_names") is not None or len(active) != 1 \
            or active[0] not in self.lora_A or active[0] in getattr(self, "lora_variant", {}) \
            or self.lora_B[active[0]].bias is not None:
        return self._forge_peft_forward(x, *args, **kwargs)
    name = active[0]
    a, b = self.lora_A[name].weight, self.lora_B[name].weight
    rows = x.reshape(-1, x.shape[-1])
    weight = _base_weight(self.base_layer)
    if weight is not None and not args and not kwargs and isinstance(self.lora_dropout[name], torch.nn.Identity):
        # one autograd node for base + LoRA: the backward adds the LoRA input gradient into the base one
        dense = getattr(self, "_forge_dense", None)  # the weight held dequantized (training.memory's plan)
        inputs = (dense, None, None, None, None, None) if dense is not None else _weight_inputs(weight)
        result = self._forge_lora_function.apply(rows, *inputs, self.base_layer.bias, a, b, float(self.scaling[name]))
        return result.view(*x.shape[:-1], result.shape[-1])
    # a 2-D input gives a 2-D output that is no view: addmm_ on a view would make autograd copy the whole
    # gradient (CopySlices) in the backward pass
    result = self.base_layer(rows, *args, **kwargs)
    h = self.lora_dropout[name](rows)
    if not torch.is_autocast_enabled(h.device.type):
        h = h.to(a.dtype)
    h = torch.nn.functional.linear(h, a)
    if result._base is not None or not result.is_contiguous():
        result = result + torch.nn.functional.linear(h.to(result.dtype), b.to(result.dtype)) * self.scaling[name]
    else:
        result.addmm_(h.to(result.dtype), b.t().to(result.dtype), alpha=self.scaling[name])
    return result.view(*x.shape[:-1], result.shape[-1])


def _base_weight(layer: Any) -> Any:
    """The frozen base weight of a LoRA layer's base: a plain Linear's, or a bitsandbytes 4-bit one (with its
    quantization state); None for anything else (8-bit, sharded or trainable weights), which PEFT's path keeps."""
    import torch

    weight = getattr(layer, "weight", None)
    if weight is None or weight.requires_grad or weight.numel() == 0:
        return None
    if type(layer) is torch.nn.Linear:
        return weight
    if type(weight).__name__ == "Params4bit" and getattr(weight, "quant_state", None) is not None:
        return weight
    return None


def _weight_inputs(weight: Any) -> tuple[Any, ...]:
    """The base weight as the fused Function's inputs: a dense weight as it is; a 4-bit one as its packed data,
    its quantization state's tensors and its layout, so that every tensor the dequantization reads is an input
    saved for the backward pass rather than an attribute the Function reaches into (the form the GPU tests check
    under torch.compile; the zero gradients once seen there came from the in-place update, see the forward)."""
    if type(weight).__name__ != "Params4bit":
        return weight, None, None, None, None, None
    state = weight.quant_state
    nested = state.state2 if state.nested else None
    layout = (state.blocksize, state.quant_type, tuple(state.shape), state.dtype, nested.blocksize if nested else 0)
    return (weight.data, state.absmax, nested.absmax if nested else None, nested.code if nested else None,
            state.offset if nested else None, layout)


def _dense(weight: Any, absmax: Any, absmax2: Any, code2: Any, offset: Any, layout: Any, dtype: Any) -> Any:
    """The base weight in `dtype`; a 4-bit one dequantized through bitsandbytes' torch ops, as its
    dequantize_4bit does (the block scales first, when they are quantized themselves)."""
    if layout is None:
        return weight.to(dtype)
    import torch

    blocksize, quant_type, shape, stored, blocksize2 = layout
    if absmax2 is not None:
        absmax = torch.ops.bitsandbytes.dequantize_blockwise(absmax, absmax2, code2, blocksize2, torch.float32) + offset
    return torch.ops.bitsandbytes.dequantize_4bit(weight, absmax, blocksize, quant_type, list(shape), stored).to(dtype)


@functools.cache
def _lora_function() -> Any:
    import torch

    class LoraLinear(torch.autograd.Function):
        """y = x W^T + s (x A^T) B^T with W frozen (4-bit weights dequantized in each pass, as bitsandbytes
        does, unless held dequantized); the backward writes x's gradient once: dy B s A, then dy W added in place.

        The rank-r product goes first and the large one adds into it: a product with K = r is a memory-bound
        pass over the whole output, and written first it is one write; the large product then reads it in its
        epilogue, hidden under its own arithmetic (7B step on an H200, 2026-12-04: the rank-16 products took
        69 of 930 ms of kernels in the other order, where each read and wrote the output again; 27 ms in this one)."""

        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any, absmax: Any, absmax2: Any, code2: Any, offset: Any, layout: Any,
                    bias: Any, a: Any, b: Any, scaling: float) -> Any:
            dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
            base = (weight, absmax, absmax2, code2, offset)
            with torch.autocast(x.device.type, enabled=False):
                x = x.to(dtype)
                xa = torch.nn.functional.linear(x, a.to(dtype))
                dense = _dense(*base, layout, dtype)
                # beta=0: the first argument only gives the output's shape and is never read
                y = torch.addmm(xa.new_empty(()), xa, b.to(dtype).t(), beta=0, alpha=scaling)
                if torch.compiler.is_compiling():
                    # traced by torch.compile, an in-place update of the output loses this Function's backward
                    # (zero gradients on CUDA, H100): out of place there, where the compiler plans the memory
                    y = torch.addmm(y, x, dense.t())
                else:
                    y.addmm_(x, dense.t())
                if bias is not None:
                    y = y + bias.to(dtype)
            ctx.save_for_backward(x, xa, a, b, *base)
            ctx.layout, ctx.scaling = layout, scaling
            ctx.bias_grad = bias is not None and bias.requires_grad
            return y

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            x, xa, a, b, *base = ctx.saved_tensors
            dtype = x.dtype
            with torch.autocast(x.device.type, enabled=False):
                grad = grad.to(dtype)
                g_xa = torch.mm(grad, b.to(dtype))
                g_xa.mul_(ctx.scaling)
                grad_x = None
                if ctx.needs_input_grad[0]:
                    grad_x = torch.mm(g_xa, a.to(dtype))
                    grad_x.addmm_(grad, _dense(*base, ctx.layout, dtype))
                grad_a = torch.mm(g_xa.t(), x).to(a.dtype) if ctx.needs_input_grad[8] else None
                grad_b = (torch.mm(grad.t(), xa).mul_(ctx.scaling)).to(b.dtype) if ctx.needs_input_grad[9] else None
                grad_bias = grad.sum(0) if ctx.bias_grad else None
            return grad_x, None, None, None, None, None, None, grad_bias, grad_a, grad_b, None

    return LoraLinear


def _held_weights(layer: Any) -> list[Any]:
    """The fused LoRA layers of one decoder layer whose base weight is 4-bit: what holding it dequantized spares."""
    return [m for m in layer.modules() if hasattr(m, "_forge_lora_function")
            and type(_base_weight(m.base_layer)).__name__ == "Params4bit"]


def dense_layer_bytes(model: Any) -> float:
    """Bytes to hold one decoder layer's 4-bit LoRA base weights dequantized (the largest layer; 0 when none)."""
    sizes = [sum(math.prod(m.base_layer.weight.quant_state.shape) * m.base_layer.weight.quant_state.dtype.itemsize
                 for m in _held_weights(layer)) for layer in decoder_layers(model)]
    return float(max(sizes, default=0))


def hold_dense(model: Any, layers: int) -> str:
    """Dequantize the 4-bit base weights of the last `layers` decoder layers once and keep them: their fused LoRA
    layers read the dense copy in every pass instead of dequantizing (the same values: the weights are frozen)."""
    held, total = 0, 0
    for layer in decoder_layers(model)[-layers:] if layers > 0 else []:
        for module in _held_weights(layer):
            weight = module.base_layer.weight
            module._forge_dense = _dense(*_weight_inputs(weight), weight.quant_state.dtype)
            held, total = held + 1, total + module._forge_dense.numel() * module._forge_dense.element_size()
    return f"memory: {held} 4-bit weights of the last {layers} layers held dequantized ({total / 2**30:.1f} GiB)"


def decoder_layers(model: Any) -> list[Any]:
    """The repeated blocks of a transformers model (LLaMA-style `layers`, GPT-style `h`, BERT-style `layer`)."""
    import torch

    found: list[Any] = []
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) and \
                type(module[0]).__name__.endswith(("DecoderLayer", "Block", "Layer")):
            found = list(module)
            break
    return found


def compile_regions(model: Any) -> str:
    """torch.compile each decoder layer in place: the layers share their code, so one compilation serves all."""
    layers = decoder_layers(model)
    if not layers:
        return "compile: no decoder layers found; running uncompiled"
    for layer in layers:
        layer.compile()  # dynamic=None: a second shape compiles one graph for every length
    return f"compile: {len(layers)} decoder layers compiled (regional)"
