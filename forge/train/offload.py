"""Activation checkpointing with each layer's input kept in pinned CPU memory.

Under gradient checkpointing a decoder layer keeps only its input for the backward pass, which recomputes the
layer from it; across 32 layers of a 7B model at 8 x 2048 tokens those inputs are 4 GiB. Here each input is
copied to pinned CPU memory on a side stream while the next layers compute, and copied back on another side
stream one layer ahead of the backward pass that needs it, so neither copy waits on compute. The newest input
stays on the GPU until the next layer's input arrives: the last layer's, whose backward comes right after the
forward pass, never travels (its round trip would have nothing to hide behind). Only the layer inputs move:
what the layer saves while it is recomputed lives and dies within its own backward.

`install(model)` swaps the checkpoint function of the model's checkpointed layers (transformers'
GradientCheckpointingLayer calls `_gradient_checkpointing_func(forward, hidden_states)`); a call it cannot
serve (another input needing a gradient, a CPU tensor) goes to the checkpoint function the layer had.
The same swap runs regional compile under checkpointing: the layer's forward compiled, inside the checkpoint
(compiling the layer whole would put the checkpoint, and this offload, inside the graph).
"""
from __future__ import annotations

import functools
import weakref
from typing import Any, Callable


class Saved:
    """One layer input: on the GPU (`tensor`, kept while it is the newest, or brought back for its backward) or in
    pinned CPU memory (`host`, the copy's end marked by `written`). The autograd node holds it, so a forward pass
    whose backward never runs (an exception, an evaluation with gradients) frees it."""

    __slots__ = ("host", "written", "tensor", "ready", "arrived", "__weakref__")

    def __init__(self, tensor: Any, ready: Any) -> None:
        self.tensor, self.ready = tensor, ready  # ready: the compute stream's point where the input is written
        self.host = self.written = self.arrived = None


class Stash:
    """The copy streams, the newest input (still on the GPU) and the inputs sent to CPU memory in the order they
    came (for the prefetch)."""

    def __init__(self, device: Any) -> None:
        import torch

        self.device = device
        self.offload = device.type == "cuda"
        self.d2h = torch.cuda.Stream(device) if self.offload else None
        self.h2d = torch.cuda.Stream(device) if self.offload else None
        self.order: list[Any] = []  # weak references to Saved sent to CPU memory, oldest first
        self.newest: Any = None  # weak reference to the Saved kept on the GPU

    def put(self, tensor: Any) -> Saved:
        """Keep `tensor` (this layer's input) on the GPU for now; the input kept before it starts its copy out."""
        import torch

        if not self.offload:  # the CPU: nothing to move; the input stays as it is
            return Saved(tensor, None)
        saved = Saved(tensor, torch.cuda.current_stream(self.device).record_event())
        previous = self.newest() if self.newest is not None else None
        if previous is not None and previous.tensor is not None and previous.arrived is None:
            self._send(previous)
        self.newest = weakref.ref(saved)
        return saved

    def take(self, saved: Saved) -> Any:
        """The layer input on the device (waiting for its copy back, if it went out); the input of the layer
        before starts coming."""
        import torch

        if not self.offload:
            return saved.tensor
        if saved.tensor is None:
            self._fetch(saved)
        if saved.arrived is not None:
            torch.cuda.current_stream(self.device).wait_event(saved.arrived)
        tensor, saved.tensor = saved.tensor, None
        out = [s for s in (ref() for ref in self.order) if s is not None]
        older = out[:out.index(saved)] if saved in out else out
        earlier = next((s for s in reversed(older) if s.host is not None), None)
        if earlier is not None:
            self._fetch(earlier)  # the next backward's input travels while this layer recomputes
        return tensor

    def _send(self, saved: Saved) -> None:
        import torch

        tensor = saved.tensor
        with torch.cuda.stream(self.d2h):
            self.d2h.wait_event(saved.ready)
            host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            host.copy_(tensor, non_blocking=True)
            tensor.record_stream(self.d2h)  # its memory is not reused before the copy has read it
        saved.host, saved.written, saved.tensor = host, self.d2h.record_event(), None
        self.order = [ref for ref in self.order if ref() is not None and ref().host is not None]
        self.order.append(weakref.ref(saved))

    def _fetch(self, saved: Saved) -> None:
        import torch

        # allocated on the compute stream: the copy waits for that stream's work queued so far, which may still
        # be using this memory under its last owner
        tensor = torch.empty(saved.host.shape, dtype=saved.host.dtype, device=self.device)
        ready = torch.cuda.current_stream(self.device).record_event()
        with torch.cuda.stream(self.h2d):
            self.h2d.wait_event(ready)
            self.h2d.wait_event(saved.written)
            tensor.copy_(saved.host, non_blocking=True)
        saved.tensor, saved.arrived, saved.host = tensor, self.h2d.record_event(), None


@functools.cache
def _function() -> Any:
    import torch

    class OffloadedCheckpoint(torch.autograd.Function):
        """Run the layer without keeping activations, its input in the stash; in the backward, take the input
        back, recompute the layer with the same random state and autocast, and backpropagate through it."""

        @staticmethod
        def forward(ctx: Any, run: Callable, stash: Stash, hidden: Any) -> Any:
            ctx.run, ctx.stash = run, stash
            ctx.cpu_rng = torch.get_rng_state()
            ctx.device_rng = torch.cuda.get_rng_state(hidden.device) if hidden.is_cuda else None
            ctx.autocast = (torch.is_autocast_enabled(hidden.device.type),
                            torch.get_autocast_dtype(hidden.device.type), torch.is_autocast_cache_enabled())
            with torch.no_grad():
                out = run(hidden)
            ctx.saved = stash.put(hidden.detach())
            return out

        @staticmethod
        def backward(ctx: Any, *grads: Any) -> Any:
            hidden = ctx.stash.take(ctx.saved).detach().requires_grad_(True)
            ctx.saved = None
            devices = [hidden.device] if hidden.is_cuda else []
            enabled, dtype, cache = ctx.autocast
            with torch.random.fork_rng(devices=devices):
                torch.set_rng_state(ctx.cpu_rng)
                if ctx.device_rng is not None:
                    torch.cuda.set_rng_state(ctx.device_rng, hidden.device)
                with torch.enable_grad(), torch.autocast(hidden.device.type, dtype=dtype, enabled=enabled,
                                                         cache_enabled=cache):
                    out = ctx.run(hidden)
                outs = [out] if isinstance(out, torch.Tensor) else list(out)
                pairs = [(o, g) for o, g in zip(outs, grads)
                         if isinstance(o, torch.Tensor) and o.requires_grad and g is not None]
                if pairs:
                    torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
            return None, None, hidden.grad

    return OffloadedCheckpoint


def checkpoint_function(stash: Stash | None, fallback: Callable, compiled: bool = False) -> Callable:
    """The `_gradient_checkpointing_func` of a layer: (forward, hidden_states) through the stash; anything
    else (more positional inputs, a bound input that needs a gradient, an input that needs none, whose layer
    would then get no backward at all, another device), or everything when there is no stash, through
    `fallback`, the function the layer had. With `compiled`, the layer's forward runs torch.compiled inside the
    checkpoint (regional compile): the checkpoint, its offload and its recompute stay outside the graph."""
    import torch

    function = _function()  # looked up once, not at every layer call

    def checkpoint(run: Callable, *args: Any, **kwargs: Any) -> Any:
        if compiled:
            run = compiled_run(run)
        if stash is None:
            return fallback(run, *args, **kwargs)
        bound = getattr(run, "keywords", None) or {}
        if len(args) != 1 or kwargs or not isinstance(args[0], torch.Tensor) or \
                args[0].device.type != stash.device.type or not args[0].requires_grad or \
                any(isinstance(v, torch.Tensor) and v.requires_grad for v in bound.values()):
            return fallback(run, *args, **kwargs)
        return function.apply(run, stash, args[0])

    checkpoint.forge_offload = True  # type: ignore[attr-defined]
    checkpoint.forge_stash = stash  # type: ignore[attr-defined]
    return checkpoint


def compiled_run(run: Callable) -> Callable:
    """`partial(forward, layer, **kwargs)`, as transformers hands it to the checkpoint, with the layer class's
    forward torch.compiled (one compiled function per class: every layer of the model shares its graphs)."""
    if isinstance(run, functools.partial) and callable(run.func):
        return functools.partial(_compiled(run.func), *run.args, **run.keywords)
    return run


@functools.cache
def _compiled(forward: Callable) -> Callable:
    import torch

    return torch.compile(forward)


class Installer:
    """Routes the checkpointed layers of `model` through one stash on `device` (offload), through a compiled
    forward (compile), or both. The trainer turns checkpointing on again when training begins (which resets
    each layer's checkpoint function and flag), so `callback()` installs once more at that moment.

    checkpointed: checkpoint only the first this many decoder layers (transformers' per-layer flag; the others
    keep their activations); offloaded: of those, offload only the first this many layers' inputs (the others stay
    on the GPU, checkpointed by the function the layer had). None: every layer, as the model has it."""

    def __init__(self, model: Any, device: Any, offload: bool = True, compiled: bool = False,
                 checkpointed: int | None = None, offloaded: int | None = None) -> None:
        self.model, self.stash, self.layers = model, Stash(device) if offload else None, 0
        self.compiled, self.checkpointed, self.offloaded = compiled, checkpointed, offloaded

    def install(self) -> int:
        from transformers.modeling_layers import GradientCheckpointingLayer

        self.layers, index = 0, 0
        for module in self.model.modules():
            if not isinstance(module, GradientCheckpointingLayer):
                continue
            if self.checkpointed is not None and module.gradient_checkpointing and index >= self.checkpointed:
                module.gradient_checkpointing = False  # keeps its activations: nothing to recompute
                if self.compiled and not getattr(module, "_forge_compiled", False):
                    module.compile()  # no checkpoint inside it: the whole layer is one graph
                    module._forge_compiled = True
            current = getattr(module, "_gradient_checkpointing_func", None)
            if module.gradient_checkpointing and current is not None:
                stash = self.stash if self.offloaded is None or index < self.offloaded else None
                if not getattr(current, "forge_offload", False):
                    module._gradient_checkpointing_func = checkpoint_function(stash, current, self.compiled)
                self.layers += 1
            index += 1
        return self.layers

    def checkpointable(self) -> int:
        """The layers that transformers checkpoints once checkpointing is on (a model that is not quantized gets
        it from the trainer when training begins)."""
        from transformers.modeling_layers import GradientCheckpointingLayer

        return sum(isinstance(module, GradientCheckpointingLayer) for module in self.model.modules())

    def callback(self) -> Any:
        from transformers import TrainerCallback

        installer = self

        class OffloadOnTrainBegin(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                installer.install()

        return OffloadOnTrainBegin()


def install(model: Any, device: Any) -> int:
    """Route the checkpointed layers of `model` through one stash on `device`; returns how many layers."""
    return Installer(model, device).install()
