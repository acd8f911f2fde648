"""The speed switches on a GPU: PyTorch's variable-length flash attention against per-example attention, the
fused LoRA forward on a 4-bit layer against PEFT's, and whole QLoRA runs with every switch on (Liger kernels,
fused LoRA, padding-free rows, activation offload; then regional compile, as asked and as auto chooses it, and
float32 norms) against the run with every switch off: the same losses within bf16 tolerance; compiled fused
4-bit layers against eager gradients.

Self-contained (model, tokenizer and texts built in a temporary folder); skipped without CUDA.
"""
from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
from gpu_runs import close, losses, run, six_qlora_steps, small_setup  # noqa: E402
from gpu_texts import SHAPE  # noqa: E402
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

OFF = ["training.speed.liger_kernels=false", "training.speed.fused_lora=false", "training.speed.padding_free=false",
       "training.speed.activation_offload=false", "training.speed.compile=off"]
EAGER = "training.speed.compile=off"  # 8 x 512 tokens: auto would compile (in place of Liger)
RECIPE = six_qlora_steps("""\
  gradient_checkpointing: true
  memory: "off"  # every layer checkpointed: the switches are compared under checkpointing (test_memory_gpu.py: the plan)
  mixed_precision: bf16
  logging_steps: 1
  save_steps: 100
""")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("liger_kernel")
    return small_setup(tmp_path_factory.mktemp("speed"), 48, longest=400, model_longest=400, recipe=RECIPE)


def test_every_switch_on_trains_like_every_switch_off(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    off = run(setup, "off", monkeypatch, *OFF)
    on = run(setup, "on", monkeypatch, EAGER)  # auto on a GPU: all four on
    assert on["speed"] == {"liger_kernels": True, "fused_lora": True, "padding_free": True,
                           "activation_offload": True, "compile": "off", "fp32_norms": False}
    assert not any(v for k, v in off["speed"].items() if k != "compile")
    assert any(n.startswith("liger_kernels: fused RMSNorm") for n in on["notes"])
    assert any(n.startswith("activation_offload: the inputs of 4 checkpointed layers") for n in on["notes"])
    assert losses(off)[0] > losses(off)[-1]  # it learns
    assert close(losses(on), losses(off), 2e-2), (losses(on), losses(off))
    assert on["tokens_seen"] == off["tokens_seen"]  # the same real tokens, no padding counted
    no_offload = run(setup, "no-offload", monkeypatch, "training.speed.activation_offload=false", EAGER)
    assert close(losses(no_offload), losses(on), 2e-2)  # memory: see BENCHMARKS.md (7B: 10.6 -> 6.9 GiB)


def test_regional_compile_and_fp32_norms_train_the_same(setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    base = run(setup, "base", monkeypatch, EAGER)
    compiled = run(setup, "compiled", monkeypatch, "training.speed.compile=regional")  # with Liger
    assert "compile: 4 decoder layers compiled (regional, inside their checkpoints)" in compiled["notes"]
    assert any(n.startswith("activation_offload: the inputs of 4") for n in compiled["notes"])
    assert close(losses(compiled), losses(base), 2e-2), (losses(compiled), losses(base))
    # auto at 8 x 512 tokens: compiled without Liger, the whole layer one graph with the fused 4-bit layers in it
    # (their in-place update once lost their backward under compile: loss flat, gradient norm 0)
    plain = run(setup, "noliger", monkeypatch, "training.speed.liger_kernels=false", EAGER)
    compiled_plain = run(setup, "auto", monkeypatch)
    assert {k: compiled_plain["speed"][k] for k in ("compile", "liger_kernels", "fused_lora")} == \
        {"compile": "regional", "liger_kernels": False, "fused_lora": True}
    assert close(losses(compiled_plain), losses(plain), 2e-2), (losses(compiled_plain), losses(plain))
    assert losses(compiled_plain)[-1] < 0.9 * losses(compiled_plain)[0]  # it learns
    fp32 = run(setup, "fp32", monkeypatch, "training.speed.fp32_norms=true", EAGER)
    assert fp32["speed"]["fp32_norms"] is True
    assert close(losses(fp32), losses(base), 3e-2), (losses(fp32), losses(base))


@pytest.mark.parametrize("lengths", [[100, 257, 31, 512], [256, 256, 256]])
def test_varlen_attention_equals_attention_per_example(lengths: list[int]) -> None:
    from forge.train.speed import varlen_attention

    heads, dim = 8, 64
    total = sum(lengths)
    q, k, v = (torch.randn(1, heads, total, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
               for _ in range(3))
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    out, _ = varlen_attention(None, q, k, v, None, scaling=dim ** -0.5, cu_seq_lens_q=cu, cu_seq_lens_k=cu,
                              max_length_q=max(lengths), max_length_k=max(lengths))
    assert out.shape == (1, total, heads, dim)
    grad = torch.randn_like(out)
    (out * grad).sum().backward()
    got = [t.grad.clone() for t in (q, k, v)]
    refs, start = [], 0
    q2, k2, v2 = (t.detach().double().requires_grad_() for t in (q, k, v))
    for n in lengths:  # the reference in float64, each example alone
        s = slice(start, start + n)
        refs.append(torch.nn.functional.scaled_dot_product_attention(q2[:, :, s], k2[:, :, s], v2[:, :, s],
                                                                     is_causal=True).transpose(1, 2))
        start += n
    ref = torch.cat(refs, dim=1)
    (ref * grad.double()).sum().backward()
    assert (out.double() - ref).norm() / ref.norm() < 1e-2
    for g, r in zip(got, (q2.grad, k2.grad, v2.grad)):
        assert (g.double() - r).norm() / r.norm() < 2e-2


def lora_4bit(setup: dict[str, Any]) -> Any:
    """The small model of these tests in NF4 with LoRA r16 on every linear layer (B not zero, so that the
    adapters change the output)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(setup["model"], quantization_config=quant, dtype=torch.bfloat16,
                                                 device_map={"": 0})
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.02)
    return model


def lora_step(model: Any, ids: Any) -> tuple[float, list[Any]]:
    """One forward and backward pass in bf16 autocast: the loss and the LoRA gradients (float32)."""
    model.zero_grad()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.item(), [p.grad.float() for p in model.parameters() if p.grad is not None]


def test_fused_lora_on_a_4bit_model_matches_peft(setup: dict[str, Any]) -> None:
    from forge.train.speed import fuse_lora

    model = lora_4bit(setup)
    ids = torch.randint(10, model.config.vocab_size, (4, 256), device="cuda")
    loss_peft, grads_peft = lora_step(model, ids)
    assert fuse_lora(model).startswith("fused_lora: 28 LoRA layers")  # 7 linear layers x 4 blocks
    loss_fused, grads_fused = lora_step(model, ids)
    assert abs(loss_fused - loss_peft) <= 1e-3 * abs(loss_peft)
    flat_peft, flat_fused = torch.cat([g.flatten() for g in grads_peft]), torch.cat([g.flatten() for g in grads_fused])
    assert (flat_fused - flat_peft).norm() / flat_peft.norm() < 2e-2


def test_weights_held_dequantized_give_the_4bit_losses_and_gradients_exactly(setup: dict[str, Any]) -> None:
    from forge.train.speed import dense_layer_bytes, fuse_lora, hold_dense

    model = lora_4bit(setup)
    fuse_lora(model)
    c = model.config
    kv = c.num_key_value_heads * (c.hidden_size // c.num_attention_heads)
    per_layer = c.hidden_size * (2 * c.hidden_size + 2 * kv) + 3 * c.hidden_size * c.intermediate_size
    assert dense_layer_bytes(model) == 2 * per_layer  # bf16, the seven linear layers of one block
    ids = torch.randint(10, c.vocab_size, (4, 256), device="cuda")
    loss_4bit, grads_4bit = lora_step(model, ids)
    before = torch.cuda.memory_allocated()
    assert hold_dense(model, 2).startswith("memory: 14 4-bit weights of the last 2 layers held dequantized")
    assert torch.cuda.memory_allocated() - before >= 2 * 2 * per_layer
    loss_half, grads_half = lora_step(model, ids)
    hold_dense(model, c.num_hidden_layers)
    loss_dense, grads_dense = lora_step(model, ids)
    # the same dequantized values in the same products: identical, not merely close
    assert loss_half == loss_4bit and loss_dense == loss_4bit
    for got in (grads_half, grads_dense):
        assert all(torch.equal(g, r) for g, r in zip(got, grads_4bit))


@pytest.mark.parametrize("where", ["checkpoint", "layer"])
def test_compiled_fused_4bit_layers_get_the_eager_gradients(setup: dict[str, Any], where: str) -> None:
    """Regional compile of fused 4-bit LoRA layers: inside the checkpoint (Forge's path under gradient
    checkpointing) and the whole layer (without checkpointing) give the eager loss and LoRA gradients."""
    from forge.train import offload
    from forge.train.speed import compile_regions, fuse_lora

    torch._dynamo.reset()
    model = lora_4bit(setup)
    fuse_lora(model)
    if where == "checkpoint":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    ids = torch.randint(10, model.config.vocab_size, (4, 256), device="cuda")

    def step() -> tuple[float, torch.Tensor]:
        model.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = [p.grad.float().flatten() if p.grad is not None else torch.zeros(p.numel(), device="cuda")
                 for p in model.parameters() if p.requires_grad]
        return loss.item(), torch.cat(grads)

    loss_eager, grads_eager = step()
    if where == "checkpoint":
        assert offload.Installer(model, torch.device("cuda"), offload=True, compiled=True).install() == 4
    else:
        compile_regions(model)
    loss_compiled, grads_compiled = step()
    assert abs(loss_compiled - loss_eager) <= 1e-2 * abs(loss_eager)
    assert grads_eager.norm() > 0
    assert (grads_compiled - grads_eager).norm() / grads_eager.norm() < 5e-2, \
        (grads_compiled.norm().item(), grads_eager.norm().item())


def test_offloaded_checkpointing_moves_layer_inputs_and_keeps_the_gradients(setup: dict[str, Any]) -> None:
    """Forge's offload against transformers' checkpointing on the same bf16 LoRA model (dropout on, so the
    recompute must replay the random state): the same loss and gradients, and after the forward pass the
    layer inputs are in CPU memory, not on the GPU."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from forge.train import offload

    model = AutoModelForCausalLM.from_pretrained(setup["model"], dtype=torch.bfloat16).cuda()
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.1, target_modules="all-linear"))
    model.train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    ids = torch.randint(10, model.config.vocab_size, (4, 2048), device="cuda")

    where: list[Any] = []  # the layer inputs after the forward pass: on the host, and the one kept on the GPU

    def step() -> tuple[float, int, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        torch.manual_seed(7)
        before = torch.cuda.memory_allocated()
        loss = model(input_ids=ids, labels=ids).loss
        torch.cuda.synchronize()
        held = torch.cuda.memory_allocated() - before  # what the forward keeps for the backward
        stash = getattr(model.base_model.model.model.layers[0]._gradient_checkpointing_func, "forge_stash", None)
        if stash is not None:
            sent = [ref() for ref in stash.order if ref() is not None]
            where.append(([s.host.device.type for s in sent if s.host is not None], stash.newest().tensor))
        loss.backward()
        return loss.item(), held, [p.grad.float() for p in model.parameters() if p.grad is not None]

    loss_ref, held_ref, grads_ref = step()
    assert offload.install(model, torch.device("cuda", 0)) == 4
    loss, held, grads = step()
    layer_input = ids.numel() * SHAPE["hidden_size"] * 2  # bf16 hidden states of one layer
    # three inputs in pinned CPU memory; the last layer's, whose backward comes first, stays on the GPU
    (hosts, kept), = where
    assert hosts == ["cpu"] * 3 and kept.is_cuda and kept.numel() * 2 == layer_input
    # the GPU memory of two of them at least is back (the block of the one sent last may still wait for the
    # allocator to see its copy's end: 3 of 3 in some runs, 2 in others)
    assert held_ref - held >= 1.9 * layer_input, (held_ref, held, layer_input)
    assert abs(loss - loss_ref) <= 1e-3 * abs(loss_ref)
    flat_ref, flat = torch.cat([g.flatten() for g in grads_ref]), torch.cat([g.flatten() for g in grads])
    assert (flat - flat_ref).norm() / flat_ref.norm() < 1e-2


def test_the_guard_reads_a_gpu_norm_without_waiting_and_finds_a_nan_a_step_later() -> None:
    """Under CUDA's sync debug mode (errors on any synchronizing call): the guard takes each step's gradient norm
    without a sync, checks it at the next step (finding a NaN there and skipping that step's update), and at once
    when a step saves."""
    from transformers import TrainerControl, TrainerState

    from forge.train.callbacks import NonFiniteGuard

    model = torch.nn.Linear(64, 64, device="cuda")
    state, control = TrainerState(), TrainerControl()
    state.global_step, state.max_steps = 0, 100
    norms = iter([1.0, float("nan"), 2.0])
    guard = NonFiniteGuard(norm=lambda: torch.full((), next(norms), device="cuda") * 1.5)
    found = []
    for _ in range(3):
        model(torch.ones(8, 64, device="cuda")).sum().backward()
        torch.cuda.set_sync_debug_mode("error")
        try:
            guard.on_pre_optimizer_step(None, state, control, model=model)
            state.global_step += 1
            guard.on_step_end(None, state, control)  # nothing to save or log: no read
        finally:
            torch.cuda.set_sync_debug_mode("default")
        found.append((guard.failed_step, model.weight.grad is None))
        model.zero_grad(set_to_none=False)
    assert found == [(None, False), (None, False), (2, True)]  # step 2's NaN found at step 3, whose update is skipped
    saving = NonFiniteGuard(norm=lambda: torch.full((), float("inf"), device="cuda"))
    model(torch.ones(8, 64, device="cuda")).sum().backward()
    saving.on_pre_optimizer_step(None, state, control, model=model)
    state.global_step += 1
    control = TrainerControl(should_save=True)
    saving.on_step_end(None, state, control)
    assert saving.failed_step == state.global_step and not control.should_save and control.should_training_stop
