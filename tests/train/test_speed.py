"""The speed switches (forge/train/speed.py) on the CPU: each computes the same function as the path it
replaces (fused LoRA against PEFT's forward and gradients, padding-free attention against padded batches,
regional compile against eager), auto decides per machine, and an explicit switch that cannot work here is a
one-line error. Liger kernels and activation offload need CUDA: tests/gpu/test_speed_gpu.py."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from forge.model.errors import ForgeRuntimeError
from forge.train import speed
from forge.train.run import run_recipe

from harness_speed import lora_llama, packed_inputs, random_texts

# --------------------------------------------------------------------------------------------- deciding


def test_auto_on_the_cpu_fuses_lora_and_leaves_the_gpu_switches_off() -> None:
    s = speed.decide({}, cuda=False)
    assert (s.fused_lora, s.liger_kernels, s.padding_free, s.activation_offload, s.compile) == \
        (True, False, False, False, "off")


def test_auto_on_a_gpu_turns_padding_free_and_offload_on(monkeypatch) -> None:
    monkeypatch.setattr(speed, "liger_installed", lambda: True)
    s = speed.decide({}, cuda=True)
    assert s.padding_free and s.activation_offload and s.liger_kernels and s.fused_lora
    assert not speed.decide({}, cuda=True, gradient_checkpointing=False).activation_offload
    assert not speed.decide({}, cuda=True, engine="deepspeed").activation_offload  # the engine places memory
    assert not speed.decide({}, cuda=True, task="masked_lm").padding_free
    assert not speed.decide({}, cuda=True, dora=True).fused_lora
    assert not speed.decide({}, cuda=True, engine="deepspeed", zero3=True).fused_lora  # shards gathered per module
    assert speed.decide({}, cuda=True, engine="deepspeed").fused_lora
    # the fused 4-bit layers under regional compile, whole or inside the checkpoint: see tests/gpu
    assert speed.decide({"compile": "regional"}, cuda=True, quantized=True, gradient_checkpointing=False).fused_lora
    assert speed.decide({"compile": "regional"}, cuda=True, quantized=True).fused_lora


def test_auto_compiles_small_quantized_micro_batches_in_place_of_liger(monkeypatch) -> None:
    """Regional compile pays where Python per layer sets the pace (1 x 2048 tokens of a 7B QLoRA model: +39 %,
    H100), not at 8 x 2048; Liger's kernels split the compiled graphs, so auto leaves them off then."""
    monkeypatch.setattr(speed, "liger_installed", lambda: True)
    small = speed.decide({}, cuda=True, quantized=True, tokens=2048)
    assert (small.compile, small.liger_kernels, small.fused_lora) == ("regional", False, True)
    assert speed.decide({}, cuda=True, quantized=True, tokens=speed.COMPILE_MAX_TOKENS).compile == "regional"
    for kwargs in (dict(tokens=speed.COMPILE_MAX_TOKENS + 1), dict(tokens=None), dict(tokens=2048, cuda=False),
                   dict(tokens=2048, quantized=False), dict(tokens=2048, gradient_checkpointing=False),
                   dict(tokens=2048, engine="ddp"), dict(tokens=2048, task="masked_lm")):
        decided = speed.decide({}, **{"cuda": True, "quantized": True, **kwargs})
        assert decided.compile == "off", kwargs
    big = speed.decide({}, cuda=True, quantized=True, tokens=16384)
    assert big.liger_kernels and big.compile == "off"
    # what the recipe asks for stays: Liger asked for keeps compile off; compile asked for is on at any size
    assert speed.decide({"liger_kernels": True}, cuda=True, quantized=True, tokens=2048).compile == "off"
    assert speed.decide({"compile": "regional"}, cuda=True, quantized=True, tokens=16384).compile == "regional"
    assert speed.decide({"compile": "off"}, cuda=True, quantized=True, tokens=2048).liger_kernels


def test_auto_leaves_liger_off_when_the_package_is_missing(monkeypatch) -> None:
    monkeypatch.setattr(speed, "liger_installed", lambda: False)
    assert not speed.decide({}, cuda=True).liger_kernels
    with pytest.raises(ForgeRuntimeError, match="liger-kernel package is not installed"):
        speed.decide({"liger_kernels": True}, cuda=True)


@pytest.mark.parametrize("switches, kwargs, message", [
    ({"liger_kernels": True}, {}, "training.speed.liger_kernels is on, but it needs a CUDA GPU"),
    ({"activation_offload": True}, {}, "training.speed.activation_offload is on, but it needs a CUDA GPU"),
    ({"padding_free": True}, {"task": "masked_lm"}, "padding_free is on, but it applies to causal LMs only"),
    ({"fused_lora": True}, {"dora": True}, "fused_lora is on, but it applies to plain LoRA adapters"),
    ({"fused_lora": True}, {"lora": False}, "fused_lora is on, but it applies to plain LoRA adapters"),
    ({"fused_lora": True}, {"zero3": True}, "fused_lora is on, but DeepSpeed ZeRO-3 gathers each layer's weights"),
])
def test_a_switch_that_cannot_work_here_is_a_one_line_error(switches, kwargs, message) -> None:
    with pytest.raises(ForgeRuntimeError) as error:
        speed.decide(switches, cuda=False, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert error.value.doc == "speed-switches"


def test_false_always_turns_a_switch_off() -> None:
    s = speed.decide({"fused_lora": False, "padding_free": False, "activation_offload": False}, cuda=True)
    assert not (s.fused_lora or s.padding_free or s.activation_offload)


def test_padding_free_picks_a_variable_length_attention() -> None:
    on = speed.Speed(padding_free=True)
    assert speed.attention_for(on, None, cuda=True) == speed.VARLEN
    assert speed.attention_for(on, "sdpa", cuda=False) == speed.VARLEN
    assert speed.attention_for(on, "flex_attention", cuda=True) == "flex_attention"  # the user's choice stays
    assert speed.attention_for(speed.Speed(), None, cuda=True) is None
    assert speed.attention_for(speed.Speed(), None, cuda=True, packing=True) == speed.VARLEN
    with pytest.raises(ForgeRuntimeError, match="attn_implementation is eager"):
        speed.attention_for(on, "eager", cuda=True)


# ------------------------------------------------------------------------------------------- fused LoRA


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_fused_lora_computes_peft_outputs_and_gradients(tmp_path: Path, dropout: float) -> None:
    model, ids = lora_llama(tmp_path, dropout=dropout)

    def loss_and_grads() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        torch.manual_seed(7)  # the same dropout masks in both runs
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.train()
    loss_peft, grads_peft = loss_and_grads()
    note = speed.fuse_lora(model)
    assert note.startswith("fused_lora: ") and int(note.split()[1]) == 7 * 2  # 7 linears in each of 2 layers
    loss_fused, grads_fused = loss_and_grads()
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    out = layer(torch.randn(2, 3, layer.in_features, requires_grad=True))
    names, stack = set(), [out.grad_fn]
    while stack:  # one autograd node for base + LoRA, and no copy of the gradient (CopySlices)
        node = stack.pop()
        if node is not None and node.name() not in names:
            names.add(node.name())
            stack += [n for n, _ in node.next_functions]
    assert "CopySlices" not in names and any("LoraLinear" in n for n in names) is (dropout == 0.0)
    assert torch.allclose(loss_fused, loss_peft, rtol=1e-6, atol=1e-6)
    assert grads_fused.keys() == grads_peft.keys() and len(grads_peft) == 28
    for name, grad in grads_peft.items():
        assert torch.allclose(grads_fused[name], grad, rtol=1e-4, atol=1e-7), name


def test_fused_lora_trains_a_base_bias_like_peft() -> None:
    """lora.bias: all makes the base layers' biases trainable: the fused node gives them PEFT's gradients."""
    from peft import LoraConfig, get_peft_model

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(12, 7)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x)

    torch.manual_seed(0)
    model = get_peft_model(Net(), LoraConfig(r=3, lora_alpha=6, target_modules=["lin"], bias="all"))
    with torch.no_grad():
        model.base_model.model.lin.lora_B["default"].weight.normal_()
    x = torch.randn(2, 5, 12, requires_grad=True)

    def grads() -> list[torch.Tensor]:
        model.zero_grad()
        x.grad = None
        (model(x) ** 2).sum().backward()
        return [x.grad.clone()] + [p.grad.clone() for p in model.parameters() if p.requires_grad]

    before = grads()
    assert model.base_model.model.lin.base_layer.bias.requires_grad
    speed.fuse_lora(model)
    after = grads()
    assert len(after) == len(before) == 4  # input, base bias, A, B
    for a, b in zip(after, before):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fused_lora_leaves_disabled_adapters_and_dora_to_peft(tmp_path: Path) -> None:
    model, ids = lora_llama(tmp_path, dora=True)
    model.eval()
    with torch.no_grad():
        before = model(input_ids=ids).logits
        with model.disable_adapter():
            base_before = model(input_ids=ids).logits
        speed.fuse_lora(model)
        after = model(input_ids=ids).logits
        with model.disable_adapter():
            base_after = model(input_ids=ids).logits
    assert torch.allclose(after, before, atol=1e-6)  # DoRA layers keep PEFT's forward
    assert torch.allclose(base_after, base_before, atol=1e-6)
    assert not torch.allclose(base_before, before, atol=1e-4)  # the adapters do change the output


# ------------------------------------------------------------------------------------ padding-free rows


@pytest.mark.parametrize("lengths", [[5, 9, 3, 12], [8, 8, 8]])
def test_padding_free_rows_attend_within_each_example_only(tmp_path: Path, lengths: list[int]) -> None:
    speed.register_varlen_attention()
    model, _ = lora_llama(tmp_path, lora=False, attn=speed.VARLEN)
    model.eval()
    rows, packed = packed_inputs(lengths, vocab=model.config.vocab_size)
    with torch.no_grad():
        flat = model(**packed).logits[0]
        start = 0
        for row in rows:  # each example alone, as an ordinary batch of one
            alone = model(input_ids=row[None]).logits[0]
            assert torch.allclose(flat[start:start + len(row)], alone, atol=1e-5)
            start += len(row)


def test_the_varlen_attention_takes_padded_batches_like_sdpa(tmp_path: Path) -> None:
    """A model loaded with forge_varlen still serves padded batches (evaluation, generation) as sdpa does."""
    speed.register_varlen_attention()
    varlen, ids = lora_llama(tmp_path, lora=False, attn=speed.VARLEN)
    sdpa, _ = lora_llama(tmp_path, lora=False, attn="sdpa")
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding in the first row
    with torch.no_grad():
        got = varlen(input_ids=ids, attention_mask=mask).logits
        want = sdpa(input_ids=ids, attention_mask=mask).logits
        unmasked = sdpa(input_ids=ids).logits
    assert torch.allclose(got[0, 5:], want[0, 5:], atol=1e-5) and torch.allclose(got[1], want[1], atol=1e-5)
    assert not torch.allclose(want[0, 5:], unmasked[0, 5:], atol=1e-3)  # the mask does matter


def test_a_padding_free_run_trains_on_the_same_tokens_as_a_padded_one(tmp_path: Path) -> None:
    """Same recipe, padded and padding-free micro-batches: same validation loss before training, same first
    training loss (the loss is a mean over the same real tokens)."""
    from harness import write_recipe, prepare

    from forge.model.tiny import tiny_llama

    from transformers import TrainerCallback

    class Collator(TrainerCallback):
        def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
            fn = train_dataloader.collate_fn
            self.padding_free = getattr(getattr(fn, "data_collator", fn), "padding_free", None)

    model = tiny_llama(None, random_texts(80, seed=3), root=tmp_path / "cache")
    results = {}
    for switch in ("false", "true"):
        recipe = write_recipe(tmp_path / switch, random_texts(80, seed=4), model, name="pf")
        resolved, plan = prepare(recipe, f"training.speed.padding_free={switch}", "training.max_steps=2",
                                 "training.save_steps=2")
        collator = Collator()
        summary = run_recipe(resolved, plan, progress=False, callbacks=[collator])
        assert summary["status"] == "completed" and summary["speed"]["padding_free"] is (switch == "true")
        assert collator.padding_free is (switch == "true")  # the batches really are single rows
        lines = [json.loads(x) for x in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        results[switch] = ([r["eval_loss"] for r in lines if r.get("kind") == "eval"][0],
                           [r["loss"] for r in lines if r.get("kind") == "train"][0],
                           summary["tokens_seen"])
    (eval_padded, loss_padded, seen_padded), (eval_free, loss_free, seen_free) = results["false"], results["true"]
    assert eval_free == pytest.approx(eval_padded, rel=1e-5)
    assert loss_free == pytest.approx(loss_padded, rel=1e-5)
    assert seen_free == seen_padded > 0  # only real tokens are counted either way


# ------------------------------------------------------------------------------------ regional compile


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="inductor needs a C compiler")
def test_regional_compile_computes_the_eager_loss_and_gradients(tmp_path: Path) -> None:
    model, ids = lora_llama(tmp_path)
    model.train()
    eager = model(input_ids=ids, labels=ids).loss
    eager.backward()
    eager_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    note = speed.compile_regions(model)
    assert note == "compile: 2 decoder layers compiled (regional)"
    compiled = model(input_ids=ids, labels=ids).loss
    compiled.backward()
    assert compiled.item() == pytest.approx(eager.item(), rel=1e-5)
    for name, grad in eager_grads.items():
        assert torch.allclose(dict(model.named_parameters())[name].grad, grad, rtol=1e-3, atol=1e-6), name


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="inductor needs a C compiler")
def test_compile_inside_the_checkpoint_computes_the_eager_loss_and_gradients(tmp_path: Path) -> None:
    """Under gradient checkpointing regional compile compiles the layer's forward inside its checkpoint (the
    checkpoint and its recompute stay outside the graph); every layer shares the one compiled function."""
    from forge.train import offload

    model, ids = lora_llama(tmp_path)
    assert speed.fuse_lora(model).startswith("fused_lora: 14 LoRA layers")
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    eager = model(input_ids=ids, labels=ids).loss
    eager.backward()
    eager_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert len(eager_grads) == 28  # lora_A and lora_B of 14 layers
    model.zero_grad()
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    installer = offload.Installer(model, torch.device("cpu"), offload=False, compiled=True)
    assert installer.install() == 2
    compiled = model(input_ids=ids, labels=ids).loss
    compiled.backward()
    assert compiled.item() == pytest.approx(eager.item(), rel=1e-5)
    for name, grad in eager_grads.items():
        assert torch.allclose(dict(model.named_parameters())[name].grad, grad, rtol=1e-3, atol=1e-6), name
    # one graph for both layers (no recompilation per layer), traced whole
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    assert sum(torch._dynamo.utils.counters["graph_break"].values()) == 0


def test_a_fused_decoder_layer_compiles_to_one_graph(tmp_path: Path) -> None:
    """Every graph break costs a return to Python per LoRA layer under regional compile; the fused forward
    once looked its autograd Function up through a cached factory, which Dynamo cannot trace."""
    model, _ = lora_llama(tmp_path)
    assert speed.fuse_lora(model).startswith("fused_lora: 14 LoRA layers")
    layer = speed.decoder_layers(model)[0]
    hidden = torch.randn(1, 16, 32, requires_grad=True)
    rotary = model.base_model.model.model.rotary_emb(hidden, torch.arange(16)[None])
    explained = torch._dynamo.explain(layer)(hidden, position_embeddings=rotary, attention_mask=None)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), \
        [r.reason.splitlines()[0] for r in explained.break_reasons]


# -------------------------------------------------------------------------------- the same function as a loop


def test_forge_run_trains_exactly_like_a_hand_written_peft_loop(tmp_path: Path) -> None:
    """float32 on the CPU: `forge run` (SFTTrainer, Forge's callbacks, fused LoRA, constant lr, clipping) and a
    plain PEFT + AdamW loop over the same four papers (one micro-batch per step) give the same losses."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from forge.data.pipeline import build_datasets
    from forge.model.tiny import tiny_llama
    from forge.plan import compile_plan
    from forge.recipe.validate import resolve

    from harness_speed import SHAPE

    model_dir = tiny_llama(SHAPE, random_texts(40, 0), root=tmp_path / "cache")
    papers = tmp_path / "papers.json"
    papers.write_text(json.dumps([" ".join(random_texts(20, 10 + i)) for i in range(4)]))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
run: {{name: same, output_dir: {tmp_path}/runs, seed: 0}}
data: {{sources: [{{path: {papers}}}], split: {{validation: 0.0, test: 0.0}}}}
preprocess: []
model: {{name_or_path: {model_dir}, dtype: float32}}
lora: {{r: 4, alpha: 8, dropout: 0.0, target_modules: all-linear}}
optimizer: {{name: adamw_torch, lr: 2.0e-3, scheduler: constant, warmup_ratio: 0.0, max_grad_norm: 1.0}}
training: {{max_steps: 5, micro_batch_size: 4, max_seq_length: 32, gradient_checkpointing: false,
            mixed_precision: "no", logging_steps: 1, save_steps: 100}}
tracking: {{enabled: false}}
evaluation: {{enabled: false}}
""")
    resolved = resolve(recipe)
    summary = run_recipe(resolved, compile_plan(resolved.recipe), progress=False)
    assert summary["speed"]["fused_lora"] is True
    lines = [json.loads(x) for x in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    forge_losses = [r["loss"] for r in lines if r.get("kind") == "train"]

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    texts = build_datasets(resolved.recipe, tokenizer=tokenizer, progress=False).train["text"]
    ids = torch.tensor([tokenizer(t)["input_ids"][:32] for t in texts])
    set_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear",
                                      task_type="CAUSAL_LM"))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0)
    loop_losses = []
    for _ in range(5):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        loop_losses.append(loss.item())
    assert loop_losses[-1] < loop_losses[0]
    assert forge_losses == pytest.approx(loop_losses, rel=1e-5)
