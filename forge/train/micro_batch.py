"""`training.micro_batch_size: auto`: the largest power-of-two micro-batch that divides the effective batch
and fits in memory, with gradient accumulation making up the rest, so the optimizer sees the same batch.

On a GPU each candidate is probed with a forward and backward pass at full sequence length (catching
out-of-memory); on the CPU, where memory is rarely the limit and bigger batches do not run faster, Forge
takes min(8, effective).
"""
from __future__ import annotations

from typing import Any, Callable

from forge.model.errors import ForgeRuntimeError

CPU_MAX_MICRO_BATCH = 8
GPU_HEADROOM = 0.9  # leave room for optimizer state and fragmentation the probe does not see


def candidates(effective: int) -> list[int]:
    """Powers of two that divide effective, largest first."""
    out, size = [], 1
    while size <= effective:
        if effective % size == 0:
            out.append(size)
        size *= 2
    return out[::-1]


def choose_micro_batch(effective: int, *, cuda: bool, fits: Callable[[int], bool] | None = None) -> int:
    """The micro-batch size to train with; gradient accumulation is effective // it."""
    if effective < 1:
        raise ValueError("effective batch size must be at least 1")
    options = candidates(effective)
    if not cuda or fits is None:
        return next(size for size in options if size <= CPU_MAX_MICRO_BATCH)
    for size in options:
        if fits(size):
            return size
    raise ForgeRuntimeError("even a micro-batch of 1 does not fit in GPU memory",
                            "lower training.max_seq_length, turn on gradient_checkpointing, or quantize to 4-bit",
                            doc="out-of-memory")


def cuda_probe(model: Any, max_length: int, vocab_size: int, *, gradient_checkpointing: bool = False,
               gradient_checkpointing_kwargs: dict[str, Any] | None = None) -> Callable[[int], bool]:
    """A `fits(size)` that runs forward+backward on random tokens of max_length and reports no OOM."""
    import torch

    def fits(size: int) -> bool:
        device = torch.device("cuda", torch.cuda.current_device())
        if next(model.parameters()).device.type != "cuda":
            model.to(device)
        if gradient_checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=gradient_checkpointing_kwargs)
        model.train()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            _forward_backward(model, size, max_length, vocab_size, device)
            peak = torch.cuda.max_memory_allocated()
            ok = peak < GPU_HEADROOM * torch.cuda.get_device_properties(device).total_memory
        except torch.cuda.OutOfMemoryError:
            ok = False
        model.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        return ok

    return fits


def _forward_backward(model: Any, size: int, max_length: int, vocab_size: int, device: Any) -> None:
    """One training step's activations and gradients; its tensors are freed when it returns."""
    import torch

    ids = torch.randint(0, vocab_size, (size, max_length), device=device)
    model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
