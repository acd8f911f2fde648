"""From the Plan's trainer section to SFTConfig arguments on this machine."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from forge.model.errors import ForgeRuntimeError
from forge.train.trainer import resolve_precision, trainer_settings


def test_mixed_precision_resolves_by_device() -> None:
    assert resolve_precision("auto", cuda=False, bf16_supported=False) == "no"
    assert resolve_precision("auto", cuda=True, bf16_supported=True) == "bf16"
    assert resolve_precision("auto", cuda=True, bf16_supported=False) == "fp16"
    assert resolve_precision("bf16", cuda=False, bf16_supported=False) == "bf16"  # CPU autocast
    with pytest.raises(ForgeRuntimeError, match="fp16 needs a CUDA GPU"):
        resolve_precision("fp16", cuda=False, bf16_supported=False)
    with pytest.raises(ForgeRuntimeError, match="bfloat16"):
        resolve_precision("bf16", cuda=True, bf16_supported=False)


def test_forge_keys_are_popped_and_the_rest_builds_an_sft_config(
        write_recipe: Callable[..., Path], prepare: Callable[..., tuple[Any, Any]], tmp_path: Path) -> None:
    from trl import SFTConfig

    _, plan = prepare(write_recipe(), "training.early_stopping.enabled=true", "training.loss=causal_lm")
    settings = trainer_settings(plan.trainer, output_dir=str(tmp_path / "ck"), micro_batch=2, accumulation=4)
    assert settings.precision == "no" and settings.loss == "causal_lm"
    assert settings.early_stopping == {"patience": 3, "threshold": 0.0}
    assert not {"mixed_precision", "loss", "early_stopping"} & set(settings.args)
    config = SFTConfig(**settings.args)
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (2, 4)
    assert config.output_dir == str(tmp_path / "ck") and not config.bf16 and not config.fp16
    assert config.logging_nan_inf_filter is False and config.eval_on_start is True
    assert config.max_length == 64 and config.load_best_model_at_end
    assert plan.trainer["mixed_precision"] == "no"  # the plan itself is left alone


def test_batches_are_copied_to_a_gpu_without_waiting(write_recipe: Callable[..., Path],
                                                     prepare: Callable[..., tuple[Any, Any]], tmp_path: Path) -> None:
    _, plan = prepare(write_recipe())
    gpu = trainer_settings(plan.trainer, output_dir=str(tmp_path), cuda=True, bf16_supported=True)
    assert gpu.args["dataloader_pin_memory"] is True and gpu.args["accelerator_config"] == {"non_blocking": True}
    cpu = trainer_settings(plan.trainer, output_dir=str(tmp_path), cuda=False)
    assert cpu.args["dataloader_pin_memory"] is False and "accelerator_config" not in cpu.args


def test_batches_are_made_in_worker_processes_on_a_gpu(write_recipe: Callable[..., Path],
                                                       prepare: Callable[..., tuple[Any, Any]], tmp_path: Path) -> None:
    _, plan = prepare(write_recipe())
    assert plan.trainer["dataloader_workers"] == "auto"
    gpu = trainer_settings(plan.trainer, output_dir=str(tmp_path), cuda=True, bf16_supported=True)
    assert (gpu.args["dataloader_num_workers"], gpu.args["dataloader_persistent_workers"],
            gpu.args["dataloader_prefetch_factor"]) == (2, True, 2)
    assert "dataloader_workers" not in gpu.args  # Forge's key, resolved to transformers' ones
    cpu = trainer_settings(plan.trainer, output_dir=str(tmp_path), cuda=False)
    assert cpu.args["dataloader_num_workers"] == 0 and "dataloader_persistent_workers" not in cpu.args
    _, plan = prepare(write_recipe(), "training.dataloader_workers=0")
    assert trainer_settings(plan.trainer, output_dir=str(tmp_path), cuda=True).args["dataloader_num_workers"] == 0
    _, plan = prepare(write_recipe(), "training.dataloader_workers=3")
    assert trainer_settings(plan.trainer, output_dir=str(tmp_path), cuda=False).args["dataloader_num_workers"] == 3
