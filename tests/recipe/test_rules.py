"""Semantic rules across fields, each placed at the key that breaks it."""
from __future__ import annotations

import pytest

from forge.recipe import RecipeError, resolve
from forge.recipe.rules import runtime_issues


def issues(write, MINIMAL: str, extra: str) -> list[str]:
    """Problems of a child recipe that extends a minimal valid one, as 'LINE:COL: path: message'."""
    write("base.yaml", MINIMAL)
    path = write("r.yaml", "extends: base.yaml\n" + extra)
    try:
        resolve(path)
    except RecipeError as e:
        return [i.format().split("r.yaml:", 1)[1] for i in e.issues]
    return []


CASES = {
    "quantization without lora": (
        "quantization: {mode: 4bit}\nlora: {enabled: false}\n",
        "quantization.mode: 4bit weights cannot be trained directly; enable lora"),
    "zero3 with uint8 storage": (
        "quantization: {mode: 4bit, storage_dtype: uint8}\ndistribution: {strategy: deepspeed, zero_stage: 3, "
        "num_processes: 2}\n",
        "quantization.storage_dtype: ZeRO-3/FSDP shard 4-bit weights only when they are stored as the "
        "compute dtype (bfloat16), got uint8; set storage_dtype: bfloat16 (or auto)"),
    "early stopping without validation": (
        "data: {sources: [{path: a.json}], split: {validation: 0.0}}\ntraining: {early_stopping: {enabled: true}}\n",
        "training.early_stopping.enabled: early stopping needs a validation split"),
    "splits too large": (
        "data: {sources: [{path: a.json}], split: {validation: 0.5, test: 0.45}}\n",
        "data.split: validation + test = 0.95 leaves too little"),
    "auto batch without effective batch": (
        "training: {micro_batch_size: auto}\n",
        "training.micro_batch_size: auto needs training.effective_batch_size"),
    "micro batch too large": (
        "training: {micro_batch_size: 47262081485851424144903545861521770625987662190814783283533654403}\n",
        "training.micro_batch_size: must be at most 1,000,000; use micro_batch_size: auto"),
    "effective batch disagrees": (
        "training: {micro_batch_size: 4, gradient_accumulation_steps: 2, effective_batch_size: 16}\n",
        "training.effective_batch_size: 16 != micro_batch_size x gradient_accumulation_steps (4 x 2)"),
    "unknown loss": (
        "training: {loss: causal_llm}\n",
        "training.loss: unknown loss 'causal_llm'; did you mean 'causal_lm'?"),
    "completion loss on plain text": (
        "training: {loss: completion_only}\n",
        "training.loss: completion_only needs prompt/completion examples"),
    "processes without strategy": (
        "distribution: {num_processes: 2}\n",
        "distribution.strategy: 2 processes need a strategy"),
    "rank out of range": (
        "distribution: {strategy: ddp, num_machines: 2, machine_rank: 2}\n",
        "distribution.machine_rank: rank 2 with 2 machine(s)"),
    "param offload without zero3": (
        "distribution: {strategy: deepspeed, zero_stage: 2, offload_params: true}\n",
        "distribution.offload_params: parameter offload needs ZeRO-3 or FSDP"),
    "bad tracking uri": (
        "tracking: {uri: 'ftp://host'}\n",
        "tracking.uri: unsupported tracking URI 'ftp://host'"),
    "encoder with chat data": (
        "model: {name_or_path: bert, task: masked_lm}\ndata: {sources: [{path: a.json}], format: chat}\n",
        "data.format: masked_lm models train on plain text, got chat"),
    "gate on an unknown metric": (
        "evaluation: {gates: [{metric: gene_f2, must: not_decrease}]}\n",
        "evaluation.gates.0.metric: unknown metric 'gene_f2'; did you mean 'gene_f1'?"),
    "gate on a metric no task measures": (
        "evaluation: {tasks: [perplexity], gates: [{metric: gene_f1, must: at_least, value: 0.5}]}\n",
        "evaluation.gates.0.metric: gene_f1 is not measured by evaluation.tasks ['perplexity']; add the task "
        "gene_recognition"),
    "relative gate without a baseline": (
        "evaluation: {compare_with: null, gates: [{metric: perplexity, must: decrease_by, value: 0.1}]}\n",
        "evaluation.gates.0.must: decrease_by compares with a baseline and evaluation.compare_with is null"),
    "fused lora without lora": (
        "lora: {enabled: false}\ntraining: {speed: {fused_lora: true}}\n",
        "training.speed.fused_lora: fused_lora applies to plain LoRA adapters (lora is off); set fused_lora: auto"),
    "fused lora with dora": (
        "lora: {use_dora: true}\ntraining: {speed: {fused_lora: true}}\n",
        "training.speed.fused_lora: fused_lora applies to plain LoRA adapters (lora.use_dora is on)"),
    "fused lora under zero-3": (
        "distribution: {strategy: deepspeed, zero_stage: 3}\ntraining: {speed: {fused_lora: true}}\n",
        "training.speed.fused_lora: fused_lora reads each LoRA layer's weights outside the layer's own forward, "
        "where DeepSpeed ZeRO-3 has not gathered them; set fused_lora: auto"),
    "padding-free encoder": (
        "model: {name_or_path: bert, task: masked_lm}\ntraining: {speed: {padding_free: true}}\n",
        "training.speed.padding_free: padding_free applies to causal LMs, and model.task is masked_lm"),
    "liger on an encoder": (
        "model: {name_or_path: bert, task: masked_lm}\ntraining: {speed: {liger_kernels: true}}\n",
        "training.speed.liger_kernels: liger_kernels applies to causal LMs"),
    "padding-free with eager attention": (
        "model: {name_or_path: m, attn_implementation: eager}\ntraining: {speed: {padding_free: true}}\n",
        "training.speed.padding_free: padding_free needs an attention that keeps the examples of a row apart"),
    "token classification on a decoder": (
        "model: {name_or_path: 'forge:tiny-llama', task: token_classification}\n"
        "data: {sources: [{path: a.conll, format: conll}]}\n",
        "model.name_or_path: token_classification needs an encoder (BERT-style), got forge:tiny-llama"),
    "token classification on papers": (
        "model: {name_or_path: bert, task: token_classification}\ndata: {sources: [{path: a.json}]}\n",
        "data.sources.0.format: token_classification trains on IOB-tagged words, got format auto"),
    "conll data for a causal LM": (
        "data: {sources: [{path: a.conll, format: conll}]}\n",
        "data.sources.0.format: conll data is for model.task token_classification, and model.task is causal_lm"),
    "unknown step": (
        "preprocess:\n  - step: remove_citation\n",
        "preprocess.0.step: unknown preprocessing step 'remove_citation'"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_rule(write, MINIMAL: str, name: str) -> None:
    extra, expected = CASES[name]
    found = issues(write, MINIMAL, extra)
    assert any(i.split(": ", 1)[1].startswith(expected) for i in found), found


def test_missing_distribution_strategy_points_at_the_section(write, MINIMAL: str) -> None:
    # strategy is unset (default), so the issue falls back to the nearest key the file set
    found = issues(write, MINIMAL, "distribution:\n  num_processes: 2\n")
    assert found == ["2:1: distribution.strategy: 2 processes need a strategy; use ddp, deepspeed or fsdp"]


def test_valid_recipe_has_no_rule_issues(write, MINIMAL: str) -> None:
    assert issues(write, MINIMAL, "quantization: {mode: 4bit}\ndistribution: {strategy: deepspeed, zero_stage: 3, "
                                  "num_processes: 2}\n") == []


def test_runtime_rules_need_cuda_for_4bit(write, MINIMAL: str) -> None:
    recipe = resolve(write("r.yaml", MINIMAL + "quantization: {mode: 4bit}\n")).recipe
    [(path, message, hint)] = runtime_issues(recipe, cuda_available=False)
    assert path == ("quantization", "mode") and "needs a CUDA GPU" in message and "mode=none" in hint
    assert runtime_issues(recipe, cuda_available=True) == []


def test_runtime_rules_need_cuda_for_gpu_speed_switches(write, MINIMAL: str) -> None:
    recipe = resolve(write("r.yaml", MINIMAL + "training: {speed: {liger_kernels: true, activation_offload: true}}\n")).recipe
    found = runtime_issues(recipe, cuda_available=False)
    assert [path for path, _, _ in found] == [("training", "speed", "liger_kernels"),
                                              ("training", "speed", "activation_offload")]
    assert all("needs a CUDA GPU" in message and ": auto" in hint for _, message, hint in found)
    assert runtime_issues(recipe, cuda_available=True) == []
    auto = resolve(write("a.yaml", MINIMAL)).recipe
    assert runtime_issues(auto, cuda_available=False) == []  # auto is never an error


@pytest.mark.parametrize("strategy, name", [("deepspeed", "DeepSpeed"), ("fsdp", "FSDP")])
def test_runtime_rules_need_cuda_for_sharding_engines(write, MINIMAL: str, strategy: str, name: str) -> None:
    recipe = resolve(write("r.yaml", MINIMAL + f"distribution: {{strategy: {strategy}, num_processes: 2}}\n")).recipe
    [(path, message, hint)] = runtime_issues(recipe, cuda_available=False)
    assert path == ("distribution", "strategy") and message.startswith(f"{name} needs CUDA GPUs")
    assert hint == "use strategy: ddp for CPU processes"
    assert runtime_issues(recipe, cuda_available=True) == []
