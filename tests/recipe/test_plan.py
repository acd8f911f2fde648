"""compile_plan: a Recipe becomes the exact arguments for TRL, PEFT, bitsandbytes, DeepSpeed and LitServe."""
from __future__ import annotations

import json

import pytest
from pathlib import Path

from forge.plan import LAUNCH_ENV, compile_plan
from forge.recipe import resolve

ROOT = Path(__file__).resolve().parents[2]


def plan_for(name: str, *overrides: str):
    return compile_plan(resolve(ROOT / "recipes" / name, list(overrides)).recipe)


def test_quickstart_trainer_arguments() -> None:
    plan = plan_for("quickstart.yaml")
    t = plan.trainer
    assert t["output_dir"] == "runs/quickstart/checkpoints" and plan.run_dir == "runs/quickstart"
    assert (t["per_device_train_batch_size"], t["gradient_accumulation_steps"], t["max_length"]) == (8, 1, 256)
    assert t["eval_strategy"] == "steps" and t["load_best_model_at_end"] and t["metric_for_best_model"] == "eval_loss"
    assert t["completion_only_loss"] is False and t["report_to"] == "none"
    assert plan.quantization is None and plan.model.tiny["hidden_size"] == 128
    assert plan.launch.in_process and plan.launch.world_size == 1


def test_qlora_plan_maps_onto_bitsandbytes_and_peft() -> None:
    plan = plan_for("genomics_qlora.yaml")
    assert plan.to_dict()["quantization"] == {
        "load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
        "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_quant_storage": "uint8"}
    assert plan.quantization.bits == 4
    assert plan.lora.r == 16 and plan.lora.lora_alpha == 32 and plan.lora.task_type == "CAUSAL_LM"
    assert plan.trainer["optim"] == "paged_adamw_8bit" and plan.trainer["early_stopping"] == {"patience": 3,
                                                                                             "threshold": 0.0}
    assert plan.model.prepare_for_kbit_training is True


def test_zero2_variant_launch() -> None:
    plan = plan_for("genomics_qlora_zero2.yaml")
    launch = plan.launch
    assert launch.strategy == "deepspeed" and launch.world_size == 4 and not launch.in_process
    assert launch.deepspeed["zero_optimization"]["stage"] == 2 and not launch.shards_parameters
    assert launch.deepspeed["train_micro_batch_size_per_gpu"] == "auto"
    assert launch.env == LAUNCH_ENV and launch.env["NCCL_NVLS_ENABLE"] == "0"
    assert any("TORCH_CUDA_ARCH_LIST" in n for n in plan.notes)


def test_zero3_stores_4bit_weights_in_compute_dtype() -> None:
    plan = plan_for("genomics_qlora_zero2.yaml", "distribution.zero_stage=3", "distribution.offload_params=true")
    assert plan.quantization.bnb_4bit_quant_storage == "bfloat16" and plan.launch.shards_parameters
    zero = plan.launch.deepspeed["zero_optimization"]
    assert zero["offload_param"]["device"] == "cpu" and zero["stage3_gather_16bit_weights_on_model_save"]
    assert any("stored as bfloat16" in n for n in plan.notes)


def test_save_steps_follow_eval_steps_so_best_is_kept() -> None:
    plan = plan_for("quickstart.yaml", "training.eval_steps=30", "training.save_steps=50")
    assert plan.trainer["save_steps"] == 30 and plan.trainer["eval_steps"] == 30


def test_auto_micro_batch_is_noted() -> None:
    plan = plan_for("quickstart.yaml", "training.micro_batch_size=auto", "training.effective_batch_size=16")
    assert plan.trainer["per_device_train_batch_size"] == 1
    assert any("micro_batch_size auto" in n for n in plan.notes)


def test_instruction_data_trains_on_completions() -> None:
    assert plan_for("quickstart.yaml", "data.format=instruction").trainer["completion_only_loss"] is True


def test_lora_disabled_and_encoder_task() -> None:
    assert plan_for("quickstart.yaml", "lora.enabled=false").lora is None
    plan = plan_for("quickstart.yaml", "model.task=sequence_classification", "model.num_labels=3")
    assert plan.lora.task_type == "SEQ_CLS" and plan.model.num_labels == 3


def test_plan_is_pure_and_serialisable() -> None:
    a, b = plan_for("genomics_qlora.yaml"), plan_for("genomics_qlora.yaml")
    assert a == b
    assert json.loads(json.dumps(a.to_dict())) == a.to_dict()


def test_estimate_scales_with_quantization_and_batch() -> None:
    q4 = plan_for("genomics_qlora.yaml").estimate
    bf16 = plan_for("genomics_qlora.yaml", "quantization.mode=none").estimate
    assert 3.0 < q4["weights_gib"] < 4.5 and 12.0 < bf16["weights_gib"] < 13.5  # 6.7B params
    big = plan_for("genomics_qlora.yaml", "training.micro_batch_size=8",
                   "training.gradient_accumulation_steps=2").estimate
    assert big["activations_gib"] > q4["activations_gib"] * 1.5
    assert 39_000_000 < q4["trainable_parameters"] < 40_500_000  # LoRA r16 on all linear layers of Llama-2-7B


@pytest.mark.parametrize("overrides, measured_gib", [
    # peak allocated of `forge run`, 7B shape, QLoRA r16 (BENCHMARKS.md, 2026-11-26): with Forge's offload on
    # one H200, without offload on one H100
    (["training.micro_batch_size=8"], 6.9),
    (["training.micro_batch_size=8", "training.speed.activation_offload=false"], 10.3),
    (["training.micro_batch_size=1", "training.max_seq_length=8192"], 5.5),
    (["training.micro_batch_size=1", "training.max_seq_length=8192", "training.speed.activation_offload=false"], 7.1),
])
def test_estimate_is_close_above_the_measured_peak(overrides: list[str], measured_gib: float) -> None:
    estimate = plan_for("genomics_qlora.yaml", *overrides).estimate["peak_gib"]
    assert measured_gib <= estimate <= 1.2 * measured_gib


def test_estimate_reads_a_local_config_and_admits_unknowns(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 256, "num_hidden_layers": 2,
                                                      "num_attention_heads": 4, "vocab_size": 1000}))
    assert plan_for("quickstart.yaml", f"model.name_or_path={tmp_path}").estimate["known"]
    unknown = plan_for("quickstart.yaml", "model.name_or_path=someone/unknown-model").estimate
    assert unknown["known"] is False and "unknown offline" in unknown["reason"]


def test_estimate_of_sizes_no_gpu_holds_is_unknown_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 10 ** 200, "num_hidden_layers": 10 ** 200,
                                                      "num_attention_heads": 1, "vocab_size": 10 ** 200}))
    estimate = plan_for("quickstart.yaml", f"model.name_or_path={tmp_path}").estimate
    assert estimate == {"known": False, "reason": "the sizes are too large to estimate"}
