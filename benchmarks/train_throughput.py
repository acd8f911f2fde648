#!/usr/bin/env python3
"""QLoRA training throughput on one GPU: the plain transformers + PEFT + bitsandbytes loop, `forge run`, and
Unsloth (when its wheels are given), on the same random-init Llama-2-7B-shaped model, data and seed.

Every stack trains the same model (NF4 with double quantization, bf16 compute, LoRA r16 alpha 32 on all
linear layers, dropout 0, gradient checkpointing, torch's AdamW lr 2e-4 constant, clip 1.0; the forge recipe
names it, in place of the QLoRA base's paged 8-bit AdamW) on the same token ids, at seq 2048 (batch 1, 4, 8) and
seq 8192 (batch 1). The forge corpus is one micro-batch of papers repeated, trained in order (`shuffle: false`):
every step sees the tokens the other stacks train on, and an epoch lasts the run, as a run's epochs do.

  plain    from_pretrained(4-bit) + prepare_model_for_kbit_training + get_peft_model, a torch loop under
           bf16 autocast with AdamW: the path a naive script (and a naive `forge run`) takes
  plain-bf16  the same with the adapters cast to bfloat16, as TRL's SFTTrainer (and so forge) trains them
  forge    `forge run RECIPE` as a user runs it: the recipe below, SFTTrainer and all; one process per row
  unsloth  FastLanguageModel 4-bit + get_peft_model(use_gradient_checkpointing="unsloth"), the same torch loop

Each row: steady-state tokens/s (median step time after warm-up steps), peak GPU memory (max allocated; the
allocator's reserved peak too), and the first losses, compared with the plain loop's. With `--window W` the
measured steps are timed W at a time, every stack alike: the plain and Unsloth loops wait for the GPU only at
each window's ends (their losses are read after it), and forge logs every W steps (and every warm-up step, for
the losses), so no stack reads a value back from the GPU at every step; W 1 times every step on its own. The
plain and Unsloth workers load the model once and start every shape from the same initial adapters with a new
optimizer. `--render ROWS.json` prints the table of an earlier run again.

    python benchmarks/train_throughput.py [--out DIR] [--shapes 2048x1,2048x4,2048x8,8192x1] [--steps 4]
        [--warmup 2] [--window 1] [--stacks plain,forge,unsloth] [--unsloth-site DIR]
        [--variant NAME:KEY=VALUE,...]

Forge's rows plan their memory (`training.memory`, auto by default); `--variant at16:training.memory=16GiB` adds
rows at a budget, `--variant upeak:training.memory=@unsloth` rows at Unsloth's own peak (allocated) at each shape
(Unsloth then runs before Forge). The MFU column: model FLOPs per token (forge/flops.py) x tokens/s over the GPU's
peak dense bf16 FLOP/s; the memory-plan column: the layers Forge checkpointed and offloaded, and its predicted peak.

The model (13.5 GB in bf16, 3.9 GB as NF4) is built once under --work (default /tmp/forge-throughput); nothing
is downloaded. A second table (--real) trains on papers of the demo corpus's length distribution, where
padding matters, counting only real tokens, with and without padding-free rows.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHAPES = "2048x1,2048x4,2048x8,8192x1"
SEED = 0
LLAMA2_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=8192, rms_norm_eps=1e-5,
                 tie_word_embeddings=False)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RECIPE = """# Written by benchmarks/train_throughput.py: the QLoRA recipe of the benchmark, on a local 7B-shaped model
extends: {repo}/recipes/base/qlora.yaml
run: {{name: throughput, output_dir: {runs}, seed: {seed}}}
preprocess: []
data:
  sources: [{{path: {corpus}}}]
  split: {{validation: 0.0, test: 0.0}}
model: {{name_or_path: {model}}}
lora: {{r: 16, alpha: 32, dropout: 0.0, target_modules: all-linear}}
optimizer: {{name: adamw_torch, lr: 2.0e-4, scheduler: constant, warmup_ratio: 0.0, max_grad_norm: 1.0}}
training:
  max_steps: {steps}
  shuffle: false
  micro_batch_size: {batch}
  gradient_accumulation_steps: 1
  max_seq_length: {seq}
  gradient_checkpointing: true
  logging_steps: {window}
  save_steps: 100000
  early_stopping: {{enabled: false}}
tracking: {{enabled: false}}
evaluation: {{enabled: false}}
"""


def parse_shapes(text: str) -> list[tuple[int, int]]:
    shapes = []
    for part in text.split(","):
        seq, batch = part.lower().split("x")
        shapes.append((int(seq), int(batch)))
    return shapes


# ------------------------------------------------------------------------------------------ model and data
def build_model(work: Path, log) -> Path:
    """The random-init 7B-shaped model, saved in bf16 and quantized to NF4 (what every stack loads)."""
    target = work / "llama-2-7b-shape-nf4"
    if (target / "config.json").is_file():
        return target
    code = subprocess.call([sys.executable, __file__, "_build", str(work)], stdout=log, stderr=subprocess.STDOUT)
    if code or not (target / "config.json").is_file():
        raise SystemExit(f"building the model failed (exit {code}); see the log")
    return target


def build_bf16(work: Path, layers: int, log) -> Path:
    """The random-init Llama-2-7B-shaped model with `layers` decoder layers, saved in bf16 (built in a child
    process on GPU 0, so that the caller holds no GPU memory)."""
    target = work / f"llama-2-7b-shape-{layers}l-bf16"
    if not (target / "config.json").is_file():
        code = subprocess.call([sys.executable, __file__, "_build_bf16", str(work), str(layers)], stdout=log,
                               stderr=subprocess.STDOUT)
        if code or not (target / "config.json").is_file():
            raise SystemExit(f"building the model failed (exit {code}); see the log")
    return target


def _build_bf16(work: Path, layers: int) -> tuple[Path, object]:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    sys.path.insert(0, str(REPO))
    from forge.model.tiny import tiny_llama

    # the tokenizer of forge:tiny-llama with a 32,000-token vocabulary trained on the demo corpus
    tiny = tiny_llama({"hidden_size": 64, "num_layers": 1, "num_heads": 4, "intermediate_size": 128,
                       "vocab_size": 32000}, root=work / "tiny")
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    config = LlamaConfig(**{**LLAMA2_7B, "num_hidden_layers": layers}, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    target, staging = work / f"llama-2-7b-shape-{layers}l-bf16", work / f".bf16-{layers}l-staging"
    started = time.time()
    torch.manual_seed(SEED)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    del model
    torch.cuda.empty_cache()
    os.rename(staging, target)
    print(f"built and saved the bf16 model ({layers} layers) in {time.time() - started:.0f}s", flush=True)
    return target, tokenizer


def _build(work: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    started = time.time()
    bf16, tokenizer = _build_bf16(work, LLAMA2_7B["num_hidden_layers"])
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(bf16, quantization_config=quant, dtype=torch.bfloat16,
                                                 device_map={"": 0})
    staging = work / ".nf4-staging"
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    os.rename(staging, work / "llama-2-7b-shape-nf4")
    shutil.rmtree(bf16, ignore_errors=True)
    print(f"quantized to NF4 and saved in {time.time() - started:.0f}s", flush=True)


def write_corpus(work: Path, batch: int, seq: int, copies: int) -> Path:
    """`batch` papers, each longer than `seq` tokens, made of demo-corpus papers, the set repeated `copies` times
    (ids differ): the recipe trains them in order (`shuffle: false`), so each micro-batch holds the same papers in
    the same order and every stack sees the same tokens at every step; one epoch lasts `copies` steps, as a
    run's epochs last many steps (a new epoch waits for its first batch)."""
    path = work / f"corpus-{batch}x{seq}x{copies}.json"
    if path.is_file():
        return path
    demo = json.loads((REPO / "examples/data/high_quality_papers_demo.json").read_text())["papers"]
    chars = seq * 8  # a byte-level BPE on its own corpus: about 4-5 characters per token
    papers = []
    for i in range(batch):
        sections, size, j = [], 0, i * 37
        while size < chars:
            p = demo[j % len(demo)]
            for s in p["sections"]:
                sections.append({"heading": s["heading"], "text": s["text"]})
                size += len(s["text"])
            j += 1
        first = demo[(i * 37) % len(demo)]
        papers.append({"title": first["title"], "abstract": first["abstract"], "sections": sections,
                       "quality_score": 1.0})
    papers = [{"id": f"throughput-{k}-{i}", **paper} for k in range(copies) for i, paper in enumerate(papers)]
    path.write_text(json.dumps({"papers": papers}))
    return path


def write_recipe(work: Path, model: Path, corpus: Path, seq: int, batch: int, steps: int, window: int = 1) -> Path:
    path = work / f"recipe-{batch}x{seq}.yaml"
    path.write_text(RECIPE.format(repo=REPO, runs=work / "runs", seed=SEED, corpus=corpus, model=model, steps=steps,
                                  batch=batch, seq=seq, window=window))
    return path


def token_batches(work: Path, recipes: dict[tuple[int, int], Path], model: Path) -> Path:
    """The token ids forge trains on, for each shape, read through Forge's own data pipeline and tokenized as
    TRL does (tokenizer, then the first max_length tokens), for the other stacks to train on."""
    sys.path.insert(0, str(REPO))
    from transformers import AutoTokenizer

    from forge.data.pipeline import build_datasets
    from forge.recipe import resolve

    tokenizer = AutoTokenizer.from_pretrained(model)
    out = {}
    for (seq, batch), recipe_path in recipes.items():
        resolved = resolve(recipe_path)
        bundle = build_datasets(resolved.recipe, tokenizer=tokenizer, progress=False)
        texts = list(bundle.train["text"])
        if len(texts) % batch or any(t != texts[k % batch] for k, t in enumerate(texts)):
            raise SystemExit(f"corpus for {batch}x{seq}: {len(texts)} papers, not one set of {batch} repeated")
        ids = [tokenizer(t)["input_ids"][:seq] for t in texts[:batch]]
        short = [len(x) for x in ids if len(x) < seq]
        if short:
            raise SystemExit(f"corpus for {batch}x{seq}: lengths {short} under {seq}")
        out[f"{seq}x{batch}"] = ids
    path = work / "batches.json"
    path.write_text(json.dumps(out))
    return path


# ------------------------------------------------------------------------------------- plain and unsloth
def train_step(model, ids, params, optimizer):
    """One step of the plain and Unsloth loops: bf16 autocast, clip 1.0, AdamW; the loss, on the GPU."""
    import torch

    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def unsloth_model(model_dir: str, longest: int):
    """Unsloth's 4-bit model with LoRA as its documentation sets it up (its gradient checkpointing)."""
    from unsloth import FastLanguageModel  # first: it patches transformers on import

    import torch

    model, _ = FastLanguageModel.from_pretrained(model_name=model_dir, max_seq_length=longest, dtype=torch.bfloat16,
                                                 load_in_4bit=True, local_files_only=True)
    model = FastLanguageModel.get_peft_model(model, r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS,
                                             bias="none", use_gradient_checkpointing="unsloth",
                                             random_state=SEED, max_seq_length=longest)
    FastLanguageModel.for_training(model)
    return model


def _train_loop(model, batches: dict[str, list[list[int]]], shapes: list[tuple[int, int]], steps: int,
                warmup: int, name: str, out: Path, window: int = 1) -> None:
    """The same loop for the plain and the Unsloth model: AdamW, clip 1.0, bf16 autocast; one record per shape.
    Every shape starts from the adapters as they were initialised and a new optimizer, as a `forge run` does.
    Warm-up steps are timed one by one; measured steps `window` at a time, the GPU waited for only at each
    window's ends."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    initial = [p.detach().to("cpu", copy=True) for p in params]  # on the CPU: no GPU memory of ours counted
    results = []
    for seq, batch in shapes:
        with torch.no_grad():
            for param, first in zip(params, initial):
                param.copy_(first)
        optimizer = torch.optim.AdamW(params, lr=2e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        ids = torch.tensor(batches[f"{seq}x{batch}"], device="cuda")
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        times, losses, error = [], [], None
        try:
            for size in [1] * warmup + [window] * (steps // window):
                torch.cuda.synchronize()
                start = time.perf_counter()
                kept = [train_step(model, ids, params, optimizer) for _ in range(size)]
                torch.cuda.synchronize()
                times.append((time.perf_counter() - start) / size)
                losses += [loss.item() for loss in kept]
        except torch.OutOfMemoryError as e:
            error = f"out of memory: {str(e).splitlines()[0][:120]}"
            optimizer.zero_grad(set_to_none=True)
        del optimizer
        step = statistics.median(times[warmup:]) if len(times) > warmup else None
        results.append({"stack": name, "seq": seq, "batch": batch, "error": error, "losses": losses, "fresh": True,
                        "step_seconds": step, "tokens_per_second": seq * batch / step if step else None,
                        "peak_allocated": torch.cuda.max_memory_allocated(),
                        "peak_reserved": torch.cuda.max_memory_reserved()})
        print(json.dumps(results[-1]), flush=True)
    out.write_text(json.dumps(results))


def _plain(model_dir: str, batches: str, shapes: str, steps: int, warmup: int, out: str, window: int = 1,
           bf16_adapters: bool = False) -> None:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig, set_seed

    set_seed(SEED)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=quant, dtype=torch.bfloat16,
                                                 device_map={"": 0}, attn_implementation="sdpa")
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    if bf16_adapters:  # as TRL's SFTTrainer does for a quantized model: the adapters trained in bfloat16
        for param in model.parameters():
            if param.requires_grad:
                param.data = param.data.to(torch.bfloat16)
    model.train()
    _train_loop(model, json.loads(Path(batches).read_text()), parse_shapes(shapes), steps, warmup,
                "plain-bf16" if bf16_adapters else "plain", Path(out), window)


def _unsloth(model_dir: str, batches: str, shapes: str, steps: int, warmup: int, out: str, window: int = 1) -> None:
    model = unsloth_model(model_dir, max(seq for seq, _ in parse_shapes(shapes)))
    _train_loop(model, json.loads(Path(batches).read_text()), parse_shapes(shapes), steps, warmup, "unsloth",
                Path(out), window)


def run_worker(kind: str, model: Path, batches: Path, shapes: str, steps: int, warmup: int, work: Path, log,
               env: dict[str, str], timeout: float, window: int = 1) -> list[dict]:
    out = work / f"{kind}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, __file__, f"_{kind}", str(model), str(batches), shapes, str(steps), str(warmup), str(out),
           str(window)]
    try:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work, timeout=timeout)
    except subprocess.TimeoutExpired:
        code = "timeout"
    if not out.is_file():
        return [{"stack": kind, "seq": s, "batch": b, "error": f"exit {code}; see the log"} for s, b in
                parse_shapes(shapes)]
    return json.loads(out.read_text())


# ----------------------------------------------------------------------------------------------- forge
def run_forge(recipe: Path, name: str, overrides: list[str], work: Path, warmup: int, log, env: dict[str, str],
              seq: int, batch: int, timeout: float, window: int = 1) -> dict:
    run_dir = work / "runs" / name
    shutil.rmtree(run_dir, ignore_errors=True)
    patches = [o[1:] for o in overrides if o.startswith("@")]
    overrides = [o for o in overrides if not o.startswith("@")]
    tools = [f"log-first:{warmup}"] if window > 1 else []  # per-step losses of the warm-up, for the loss columns
    start = [sys.executable, __file__, "_forge_patched", ",".join(tools + patches)] if patches or tools else \
        [sys.executable, "-m", "forge"]
    cmd = [*start, "run", str(recipe), f"run.name={name}", *overrides]
    started = time.time()
    try:
        code = subprocess.call(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        code = "timeout"
    row = {"stack": name, "seq": seq, "batch": batch, "overrides": overrides + [f"@{p}" for p in patches],
           "wall": time.time() - started}
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    except (OSError, ValueError):
        return {**row, "error": f"exit {code}, no summary; see the log"}
    train = [r for r in lines if r.get("kind") == "train" and "loss" in r]
    # each logged rate covers the steps since the previous log: those starting after the warm-up count (every
    # step with --window 1, else windows of that many steps)
    rates = [r["tokens_per_second"] for before, r in zip(train, train[1:])
             if before["step"] >= warmup and r.get("tokens_per_second")]
    row.update(losses=[r["loss"] for r in train], speed=summary.get("speed"),
               error=None if summary.get("status") == "completed" else f"{summary.get('status')}: "
                                                                        f"{str(summary.get('error'))[:160]}",
               tokens_per_second=statistics.median(rates) if rates else None,
               peak_allocated=summary.get("peak_memory_bytes"), peak_reserved=summary.get("peak_memory_reserved_bytes"),
               memory=summary.get("memory"), flops=summary.get("flops"))
    return row


# Earlier versions of Forge's own code, for rows that measure what a change bought (`--variant NAME:@PATCH`)
def _patch(name: str) -> None:
    sys.path.insert(0, str(REPO))
    if name.startswith("log-first:"):  # not an earlier version: the first N steps logged one by one
        from transformers.trainer_callback import DefaultFlowCallback

        first, flow = int(name.split(":")[1]), DefaultFlowCallback.on_step_end

        def on_step_end(self, args, state, control, **kwargs):
            control = flow(self, args, state, control, **kwargs)
            control.should_log = control.should_log or state.global_step <= first
            return control

        DefaultFlowCallback.on_step_end = on_step_end
    elif name == "trl-metrics":  # TRL's and transformers' per-step metrics, read back at every micro-batch
        import forge.train.trainer as trainer

        trainer._plain_nll = lambda t: False
        trainer._input_tokens = lambda t, inputs: None
    elif name == "guard-norm":  # the non-finite guard computing a gradient norm of its own
        import forge.train.callbacks as callbacks

        callbacks._as_float = lambda value: None
    elif name == "blocking-copies":  # batches copied to the GPU with a wait for each copy
        import forge.train.trainer as trainer

        settings = trainer.trainer_settings

        def blocking(*args, **kwargs):
            result = settings(*args, **kwargs)
            result.args.pop("accelerator_config", None)
            return result

        trainer.trainer_settings = blocking
    elif name == "host-walks":  # transformers' FLOP count and clipping, each a walk over every module per step
        import forge.train.trainer as trainer
        from transformers import Trainer

        class Walking(trainer.ForgeSFTTrainer):
            def floating_point_ops(self, inputs):
                return Trainer.floating_point_ops(self, inputs)

            def _clip_grad_norm(self, model):
                return Trainer._clip_grad_norm(self, model)

        trainer.ForgeSFTTrainer = Walking
    elif name == "offload-all":  # every layer input sent to CPU memory right after its layer, the last one too
        from forge.train.offload import Stash

        keep = Stash.put

        def put(self, tensor):
            saved = keep(self, tensor)
            if self.offload:
                self._send(saved)
                self.newest = None
            return saved

        Stash.put = put
    elif name == "no-syncs":  # not a version: what a step without the host's reads could reach (measurement only)
        import transformers.masking_utils as masking
        import trl.trainer.utils as trl_utils

        import forge.train.callbacks as callbacks

        callbacks.NonFiniteGuard.on_pre_optimizer_step = lambda self, *args, **kwargs: None  # no gradient check
        trl_utils._use_triton = lambda device: False  # TRL scores every position: no boolean-mask selection
        masking.find_packed_sequence_indices = lambda position_ids: None  # right for rows of equal length only
    else:
        raise SystemExit(f"unknown patch {name!r} (trl-metrics, guard-norm, blocking-copies, host-walks, "
                         "offload-all, no-syncs)")


def _forge_patched(patches: str, argv: list[str]) -> int:
    for name in filter(None, patches.split(",")):
        _patch(name)
    from forge.cli import main as forge_main

    return forge_main(argv)


# ------------------------------------------------------------------------------------- real-shaped data
REAL = {"padded": ["training.speed.padding_free=false"], "padding-free": [], "packed": ["training.packing=true"]}


def real_data_rows(model: Path, args, log, env: dict[str, str]) -> list[dict]:
    """recipes/genomics_qlora.yaml as shipped (its preprocessing chunks the demo papers to at most 2048
    tokens), on the 7B-shaped model, micro-batch 8: padded rows, padding-free rows, packed rows."""
    common = [f"model.name_or_path={model}", f"run.output_dir={args.work / 'runs'}", "data.split.validation=0.0",
              "data.split.test=0.0", "training.early_stopping.enabled=false", "evaluation.enabled=false",
              "tracking.enabled=false", "lora.dropout=0.0", "optimizer.name=adamw_torch",
              "training.micro_batch_size=8", "training.gradient_accumulation_steps=1",
              f"training.max_steps={args.warmup + args.steps}", "training.logging_steps=1",
              "training.save_steps=100000"]
    rows = []
    for name, overrides in REAL.items():
        row = run_forge(REPO / "recipes/genomics_qlora.yaml", f"real-{name}", common + overrides, args.work,
                        args.warmup, log, env, 2048, 8, args.timeout)
        rows.append(row)
        print(json.dumps(row)[:400], flush=True)
    return rows


def real_table(rows: list[dict], steps: int, device: str) -> str:
    base = next((r for r in rows if r["stack"] == "real-padded" and r.get("tokens_per_second")), None)
    lines = [f"Real-shaped data, {device}, {dt.date.today().isoformat()}: recipes/genomics_qlora.yaml on the demo "
             "corpus (papers chunked to at most 2048 tokens), micro-batch 8, 7B shape; tokens/s counts real "
             f"(non-padding) tokens; median step of {steps} after warm-up", "",
             "| rows | tokens/s (real) | peak GiB (allocated / reserved) | vs padded |", "|---|---:|---|---:|"]
    for r in rows:
        tps = r.get("tokens_per_second")
        if r.get("error") or not tps:
            lines.append(f"| {r['stack'][5:]} | {r.get('error') or 'no steps'} | | |")
            continue
        vs = f"{tps / base['tokens_per_second']:.2f}x" if base else "-"
        lines.append(f"| {r['stack'][5:]} | {tps:,.0f} | {gib(r.get('peak_allocated'))} / {gib(r.get('peak_reserved'))}"
                     f" | {vs} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ table
def gib(n) -> str:
    return f"{n / 2**30:.1f}" if n else "-"


def loss_gap(a: list[float] | None, b: list[float] | None, n: int) -> str:
    if not a or not b:
        return "-"
    k = min(n, len(a), len(b))
    return f"{max(abs(x - y) / abs(y) for x, y in zip(a[:k], b[:k])):.1e}"


def model_flops(seq: int) -> float:
    """Model FLOPs per token of the benchmark's 7B QLoRA step at `seq` (forge/flops.py: no recompute counted)."""
    sys.path.insert(0, str(REPO))
    from forge.estimate import Shape
    from forge.flops import flops_per_token

    shape = Shape(LLAMA2_7B["hidden_size"], LLAMA2_7B["num_hidden_layers"], LLAMA2_7B["num_attention_heads"],
                  LLAMA2_7B["num_key_value_heads"], LLAMA2_7B["intermediate_size"], LLAMA2_7B["vocab_size"])
    return flops_per_token(shape, seq, lora_r=16).model


def mfu(row: dict, device: str) -> str:
    sys.path.insert(0, str(REPO))
    from forge.flops import peak_flops

    peak, tps = peak_flops(device), row.get("tokens_per_second")
    return f"{tps * model_flops(row['seq']) / peak:.1%}" if peak and tps else "-"


def memory_plan(row: dict) -> str:
    """A forge row's training.memory choice: checkpointed / offloaded layers and the predicted peak."""
    plan = row.get("memory")
    if not plan:
        return ""
    c = plan["choice"]
    return f"ckpt {c['checkpointed']}/{c['layers']}, offl. {c['offloaded']}; pred. {gib(plan['predicted_peak_bytes'])}"


def table(rows: list[dict], steps: int, device: str, fresh: tuple[int, int] | None = None,
          date: str | None = None, window: int = 1) -> str:
    """The Markdown table. Loss gaps only for `fresh` (the first shape run): the plain and Unsloth workers
    train one model through every shape, so only their first shape starts from the same adapters as forge."""
    by = {(r["stack"], r["seq"], r["batch"]): r for r in rows}
    lines = [f"QLoRA training throughput, {device}, {date or dt.date.today().isoformat()} "
             f"(random-init Llama-2-7B shape, NF4 + double quant, LoRA r16 all-linear, dropout 0; Unsloth and plain "
             f"checkpoint every layer, Forge as training.memory plans; median step of {steps} after warm-up"
             f"{f', timed in windows of {window} steps' if window > 1 else ''}; MFU: model FLOPs per token x tokens/s "
             "over the GPU's peak dense bf16 FLOP/s)", "",
             "| stack | seq x batch | tokens/s | vs unsloth | MFU | peak GiB (allocated / reserved) | memory plan "
             "(checkpointed / offloaded layers; predicted peak) | losses (first 3 steps) | max rel. loss gap, 3 steps: "
             "vs unsloth | vs plain |",
             "|---|---|---:|---:|---:|---|---|---|---:|---:|"]
    for r in rows:
        key = (r["seq"], r["batch"])
        plain, uns = by.get(("plain", *key)), by.get(("unsloth", *key))
        tps = r.get("tokens_per_second")
        if r.get("error") or not tps:
            lines.append(f"| {r['stack']} | {key[0]}x{key[1]} | {r.get('error') or 'no steps'} | | | | | | | |")
            continue
        vs = f"{tps / uns['tokens_per_second']:.2f}x" if uns and uns.get("tokens_per_second") and r is not uns else ""
        losses = ", ".join(f"{x:.4f}" for x in (r.get("losses") or [])[:3])
        comparable = fresh is None or key == fresh
        gap_u = loss_gap(r.get("losses"), uns.get("losses") if uns and comparable else None, 3) \
            if r["stack"] != "unsloth" else ""
        gap_p = loss_gap(r.get("losses"), plain.get("losses") if plain and comparable else None, 3) \
            if r["stack"] != "plain" else ""
        lines.append(f"| {r['stack']} | {key[0]}x{key[1]} | {tps:,.0f} | {vs} | {mfu(r, device)} | "
                     f"{gib(r.get('peak_allocated'))} / {gib(r.get('peak_reserved'))} | {memory_plan(r)} | {losses} | "
                     f"{gap_u} | {gap_p} |")
    return "\n".join(lines)


def device_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
        return out.splitlines()[0] if out else "no GPU"
    except (OSError, subprocess.TimeoutExpired):
        return "no GPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("throughput-results"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/forge-throughput"))
    parser.add_argument("--shapes", default=SHAPES)
    parser.add_argument("--steps", type=int, default=4, help="measured steps per row, after the warm-up")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--window", type=int, default=1,
                        help="measured steps timed together (steps must be a multiple): no stack reads a value back "
                             "at each step; forge logs every WINDOW steps")
    parser.add_argument("--stacks", default="plain,plain-bf16,forge,unsloth")
    parser.add_argument("--unsloth-site", type=Path, help="folder holding unsloth and the versions it needs")
    parser.add_argument("--variant", action="append", default=[],
                        help="extra forge rows, NAME:KEY=VALUE,KEY=VALUE (recipe overrides; VALUE @unsloth: Unsloth's "
                             "peak allocated memory at that shape, as training.memory=@unsloth); an item @PATCH runs an "
                             "earlier version of a part instead (trl-metrics, guard-norm, blocking-copies, host-walks)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--real", action="store_true",
                        help="also the second table: recipes/genomics_qlora.yaml on the demo corpus, padded, "
                             "padding-free and packed, counting real tokens only")
    parser.add_argument("--main", default="yes", choices=["yes", "no"], help="run the main table")
    args = parser.parse_args()
    if args.window < 1 or args.steps % args.window:
        parser.error(f"--steps {args.steps} is not a multiple of --window {args.window}")
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    stacks = args.stacks.split(",")
    shapes = parse_shapes(args.shapes)
    total = args.warmup + args.steps
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    rows: list[dict] = []
    with open(args.out / "log.txt", "a") as log:
        mark = time.time()
        model = build_model(args.work, log)
        print(f"model ready in {time.time() - mark:.0f}s", flush=True)
        real = real_data_rows(model, args, log, env) if args.real else []
        if args.main == "no":
            shapes, stacks = [], []
        recipes = {(seq, batch): write_recipe(args.work, model, write_corpus(args.work, batch, seq, total + 1), seq,
                                              batch, total, args.window)
                   for seq, batch in shapes}
        batches = token_batches(args.work, recipes, model)
        for kind in ("plain", "plain-bf16"):
            if kind in stacks:
                rows += run_worker(kind, model, batches, args.shapes, args.steps, args.warmup, args.work, log, env,
                                   args.timeout, args.window)
        variants = [("forge", [])] + [(v.split(":", 1)[0], [o for o in v.split(":", 1)[1].split(",") if o])
                                      for v in args.variant]
        if "unsloth" in stacks:  # first: a forge row may take Unsloth's peak as its memory budget
            if args.unsloth_site and args.unsloth_site.is_dir():
                uenv = {**env, "PYTHONPATH": str(args.unsloth_site), "UNSLOTH_DISABLE_STATISTICS": "1"}
                rows += run_worker("unsloth", model, batches, args.shapes, args.steps, args.warmup, args.work, log,
                                   uenv, args.timeout, args.window)
            else:
                rows += [{"stack": "unsloth", "seq": s, "batch": b,
                          "error": "skipped: no --unsloth-site with the unsloth package"} for s, b in shapes]
        if "forge" in stacks:
            for seq, batch in shapes:
                for name, overrides in variants:
                    unsloth = next((r for r in rows if r["stack"] == "unsloth" and (r["seq"], r["batch"]) == (seq, batch)
                                    and r.get("peak_allocated")), None)
                    if any(o.endswith("=@unsloth") for o in overrides) and unsloth is None:
                        rows.append({"stack": name, "seq": seq, "batch": batch, "error": "no Unsloth peak to match"})
                        continue
                    # KEY=@unsloth: Unsloth's own peak (allocated) at this shape, in bytes
                    concrete = [o.replace("=@unsloth", f"={unsloth['peak_allocated']}B") if unsloth else o
                                for o in overrides]
                    rows.append(run_forge(recipes[(seq, batch)], name, concrete, args.work, args.warmup, log, env,
                                          seq, batch, args.timeout, args.window))
                    print(json.dumps(rows[-1])[:400], flush=True)
                    # kept as they come: a call stopped at its time limit still has every finished row
                    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    order = {name: i for i, name in enumerate(["plain", "plain-bf16", "forge", *[v[0] for v in variants[1:]],
                                               "unsloth"])}
    rows.sort(key=lambda r: (r["seq"], r["batch"], order.get(r["stack"], 99)))
    text = table(rows, args.steps, device_name(), window=args.window) if rows else ""
    if real:
        text += "\n\n" + real_table(real, args.steps, device_name())
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    (args.out / "table.md").write_text(text + "\n")
    print(text)
    return 0


def render(path: Path) -> int:
    """The tables of an earlier run, from its rows.json (device and date as recorded in its table.md)."""
    rows = json.loads(path.read_text())
    main_rows = [r for r in rows if not r["stack"].startswith("real-")]
    header = (path.parent / "table.md").read_text().splitlines()[0] if (path.parent / "table.md").is_file() else ""
    parts = header.split(", ")
    device = ", ".join(parts[1:4]) if len(parts) > 4 else "device not recorded"
    date = parts[4][:10] if len(parts) > 4 else None
    steps = int(header.split("median step of ")[1].split()[0]) if "median step of " in header else 4
    workers = [r for r in main_rows if r["stack"] in ("plain", "plain-bf16", "unsloth")]
    # rows without "fresh" come from a version that trained the workers on through the shapes: only the
    # first shape compares
    first = None if all(r.get("fresh") for r in workers) else (main_rows[0]["seq"], main_rows[0]["batch"])
    print(table(main_rows, steps, device, fresh=first, date=date))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--render":
        sys.exit(render(Path(sys.argv[2])))
    if len(sys.argv) > 2 and sys.argv[1] == "_forge_patched":
        sys.exit(_forge_patched(sys.argv[2], sys.argv[3:]))
    if len(sys.argv) > 1 and sys.argv[1] == "_build":
        _build(Path(sys.argv[2]))
    elif len(sys.argv) > 3 and sys.argv[1] == "_build_bf16":
        _build_bf16(Path(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] in ("_plain", "_plain-bf16", "_unsloth"):
        kind, rest = sys.argv[1], sys.argv[2:]
        args = (rest[0], rest[1], rest[2], int(rest[3]), int(rest[4]), rest[5], int(rest[6]) if len(rest) > 6 else 1)
        if kind == "_unsloth":
            _unsloth(*args)
        else:
            _plain(*args, bf16_adapters=kind == "_plain-bf16")
    else:
        sys.exit(main())
