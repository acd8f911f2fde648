"""The plan's memory estimate counts what PEFT will train: LoRA adapters and the full copies of
lora.modules_to_save (on a 7B model, trainable embeddings and head are gigabytes of optimizer state)."""
from __future__ import annotations

from pathlib import Path

import pytest

from forge.estimate import estimate_memory
from forge.recipe import resolve

ROOT = Path(__file__).resolve().parents[2]


def recipe_for(model: Path | str, *overrides: str):
    return resolve(ROOT / "recipes" / "quickstart.yaml", [f"model.name_or_path={model}", *overrides]).recipe


@pytest.mark.parametrize("saved", [[], ["embed_tokens", "lm_head"], ["lm_head", "norm"],
                                   ["embed_tokens", "input_layernorm"]])
def test_estimated_trainable_parameters_equal_peft_s(tiny_llama_dir: Path, saved: list[str]) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    recipe = recipe_for(tiny_llama_dir, f"lora.modules_to_save=[{','.join(saved)}]")
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    peft_model = get_peft_model(model, LoraConfig(r=recipe.lora.r, lora_alpha=recipe.lora.alpha,
                                                  target_modules="all-linear", modules_to_save=saved or None))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert estimate_memory(recipe)["trainable_parameters"] == trainable


def test_trainable_embeddings_and_head_raise_a_7b_estimate_by_gigabytes() -> None:
    lora_only = estimate_memory(recipe_for("meta-llama/Llama-2-7b-hf", "lora.modules_to_save=[]"))
    with_saved = estimate_memory(recipe_for("meta-llama/Llama-2-7b-hf", "lora.modules_to_save=[embed_tokens,lm_head]"))
    assert with_saved["trainable_parameters"] - lora_only["trainable_parameters"] == 2 * 32000 * 4096
    assert with_saved["optimizer_and_grads_gib"] - lora_only["optimizer_and_grads_gib"] > 3  # 16 bytes a parameter


def test_a_module_the_estimate_cannot_size_is_named() -> None:
    estimate = estimate_memory(recipe_for("meta-llama/Llama-2-7b-hf", "lora.modules_to_save=[my_head]"))
    assert "lora.modules_to_save my_head not counted" in estimate["note"]
