"""Forge's offloaded checkpointing (forge/train/offload.py) on the CPU, where the layer inputs stay in place: the
recompute in the backward pass must give the gradients of transformers' own checkpointing, LoRA dropout included
(the random state is replayed), and anything it cannot serve goes to the layer's own checkpoint function."""
from __future__ import annotations

from pathlib import Path

import torch

from forge.train import offload
from harness_speed import lora_llama


def gradients(model, ids) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    torch.manual_seed(5)
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_offloaded_checkpointing_gives_the_gradients_of_checkpointing(tmp_path: Path) -> None:
    model, ids = lora_llama(tmp_path, dropout=0.3)  # dropout: the recompute must draw the same masks
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    loss_ref, ref = gradients(model, ids)
    assert offload.install(model, torch.device("cpu")) == 2  # the tiny model's two decoder layers
    calls = []
    original = offload._function().apply
    offload._function().apply = lambda *a: calls.append(1) or original(*a)
    try:
        loss, got = gradients(model, ids)
    finally:
        offload._function().apply = original
    assert len(calls) == 2  # every layer went through the offloaded path
    assert loss == loss_ref
    assert set(got) == set(ref) and any("lora_A" in n for n in got)
    for name in ref:
        assert torch.allclose(got[name], ref[name], rtol=1e-5, atol=1e-7), name


def test_calls_it_cannot_serve_go_to_the_layers_own_function() -> None:
    seen = []

    def fallback(run, *args, **kwargs):
        seen.append((args, kwargs))
        return run(*args, **kwargs)

    checkpoint = offload.checkpoint_function(offload.Stash(torch.device("cpu")), fallback)
    x = torch.ones(2, 3, requires_grad=True)
    needs_grad = torch.ones(3, requires_grad=True)

    import functools

    assert torch.equal(checkpoint(lambda a, b: a + b, x, x), 2 * x)  # two positional inputs
    bound = functools.partial(lambda a, bias: a + bias, bias=needs_grad)
    out = checkpoint(bound, x)  # a bound input that needs its own gradient
    out.sum().backward()
    assert len(seen) == 2 and torch.equal(needs_grad.grad, torch.full((3,), 2.0))
    checkpoint(lambda a: a * 2, torch.ones(3))  # an input that needs no gradient: no backward would reach the layer
    assert len(seen) == 3


def test_a_forward_without_backward_leaves_nothing_behind() -> None:
    stash = offload.Stash(torch.device("cpu"))
    checkpoint = offload.checkpoint_function(stash, lambda *a, **k: None)
    x = torch.ones(4, requires_grad=True)
    out = checkpoint(lambda h: h * 3, x)
    saved = out.grad_fn.saved
    import weakref

    ref = weakref.ref(saved)
    del out, saved
    assert ref() is None  # the autograd node held the input; dropping the graph frees it


def test_the_offload_survives_the_trainer_turning_checkpointing_on_again(tmp_path: Path) -> None:
    model, _ = lora_llama(tmp_path)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    installer = offload.Installer(model, torch.device("cpu"))
    assert installer.install() == 2
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]

    def ours() -> list[bool]:
        return [getattr(m._gradient_checkpointing_func, "forge_offload", False) for m in layers]

    assert ours() == [True, True]
    functions = [m._gradient_checkpointing_func for m in layers]
    installer.install()  # installing twice does not wrap the function in itself
    assert [m._gradient_checkpointing_func for m in layers] == functions
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})  # as Trainer.train does
    assert ours() == [False, False]
    installer.callback().on_train_begin(None, None, None)
    assert ours() == [True, True]
