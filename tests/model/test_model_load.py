"""Loading tokenizer and model from a Plan: sources, clear errors, pad token, domain tokens, LoRA options."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest

from forge.model.errors import ForgeRuntimeError
from forge.plan import EightBitPlan, FourBitPlan, LoraPlan, ModelPlan
from forge.model.load import (check_quantization, load_for_training, prepare_tokenizer, quantization_config,
                              resolve_dtype, resolve_source)

LORA = LoraPlan(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", bias="none", modules_to_save=None,
                use_dora=False, use_rslora=False, task_type="CAUSAL_LM")
QLORA = FourBitPlan(bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype="bfloat16",
                    bnb_4bit_quant_storage="uint8")


def plan_model(path: Path | str, **changes: Any) -> ModelPlan:
    return ModelPlan(**{"name_or_path": str(path), "tokenizer": str(path), **changes})


def test_a_missing_model_folder_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(ForgeRuntimeError, match="does not exist") as info:
        resolve_source(str(tmp_path / "nope"))
    assert "\n" not in str(info.value) and info.value.hint


def test_a_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ForgeRuntimeError, match="no config.json"):
        resolve_source(str(tmp_path))


def test_hub_id_without_network_says_how_to_fix_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never touch the network
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = plan_model("forge-tests/not-a-cached-model")
    assert resolve_source(model.name_or_path) == "forge-tests/not-a-cached-model"  # an id, passed through
    with pytest.raises(ForgeRuntimeError, match="no network") as info:
        prepare_tokenizer(model)
    assert "huggingface-cli download forge-tests/not-a-cached-model" in info.value.hint
    assert "HF_HUB_OFFLINE" in info.value.hint


def test_quantization_without_cuda_fails_before_anything_loads(monkeypatch: pytest.MonkeyPatch,
                                                                tiny_llama_dir: Path) -> None:
    import forge.model.load as load

    def never(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("loaded something before refusing 4-bit")

    monkeypatch.setattr(load, "cuda_available", lambda: False)
    monkeypatch.setattr(load, "resolve_source", never)
    monkeypatch.setattr(load, "load_model", never)
    with pytest.raises(ForgeRuntimeError, match="4-bit quantization needs a CUDA GPU"):
        prepare_tokenizer(plan_model(tiny_llama_dir), QLORA)
    with pytest.raises(ForgeRuntimeError, match="8-bit"):
        check_quantization(EightBitPlan())
    check_quantization(None)  # nothing to check


def test_quantization_config_turns_dtype_names_into_dtypes() -> None:
    import torch

    config = quantization_config(QLORA)
    assert config.load_in_4bit and config.bnb_4bit_quant_type == "nf4" and config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_config(None) is None


def test_dtype_auto_is_float32_on_the_cpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CPU behaviour")
    assert resolve_dtype("auto") == "float32"
    assert resolve_dtype("bfloat16") == "bfloat16"


def test_a_tokenizer_without_pad_token_pads_with_eos(tmp_path: Path, tiny_llama_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path / "tok")
    loaded = prepare_tokenizer(plan_model(tiny_llama_dir, tokenizer=str(tmp_path / "tok")))
    assert loaded.tokenizer.pad_token == loaded.tokenizer.eos_token == "</s>"
    assert any("pad token" in note for note in loaded.notes)


def test_lora_model_trains_only_adapters_and_reports_counts(tiny_llama_dir: Path) -> None:
    tokenizer = prepare_tokenizer(plan_model(tiny_llama_dir))
    loaded = load_for_training(plan_model(tiny_llama_dir), LORA, None, tokenizer, seed=3)
    assert loaded.dtype == "float32"
    names = [n for n, p in loaded.model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert 0 < loaded.params.trainable < loaded.params.total
    assert loaded.params.total == sum(p.numel() for p in loaded.model.parameters())
    # same seed, same adapter initialisation
    again = load_for_training(plan_model(tiny_llama_dir), LORA, None, tokenizer, seed=3)
    a = dict(loaded.model.named_parameters())
    assert all((p == a[n]).all() for n, p in again.model.named_parameters())


def test_lora_options_reach_peft(tiny_llama_dir: Path) -> None:
    lora = dataclasses.replace(LORA, target_modules=["q_proj", "v_proj"], use_dora=True, use_rslora=True,
                               modules_to_save=["lm_head"])
    tokenizer = prepare_tokenizer(plan_model(tiny_llama_dir))
    model = load_for_training(plan_model(tiny_llama_dir), lora, None, tokenizer).model
    config = model.peft_config["default"]
    assert config.use_dora and config.use_rslora and set(config.target_modules) == {"q_proj", "v_proj"}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_magnitude_vector" in n for n in trainable)  # DoRA
    assert any("lm_head" in n and "modules_to_save" in n for n in trainable)
    assert not any("k_proj" in n for n in trainable)


def test_domain_tokens_are_added_resized_and_trainable(tiny_llama_dir: Path) -> None:
    model_plan = plan_model(tiny_llama_dir, domain_tokens=["<gene>", "</gene>", "BRCA1"])
    tokenizer = prepare_tokenizer(model_plan)
    assert "<gene>" in tokenizer.new_tokens and "</gene>" in tokenizer.new_tokens
    loaded = load_for_training(model_plan, LORA, None, tokenizer)
    n = len(loaded.tokenizer)
    assert loaded.model.get_input_embeddings().weight.shape[0] == n
    assert any("resized" in note for note in loaded.notes)
    assert any("trainable_tokens" in name for name, p in loaded.model.named_parameters() if p.requires_grad)
    ids = loaded.tokenizer("<gene>BRCA1</gene>", add_special_tokens=False).input_ids
    assert loaded.tokenizer.convert_tokens_to_ids("<gene>") in ids


def test_full_fine_tuning_without_lora_trains_everything(tiny_llama_dir: Path) -> None:
    tokenizer = prepare_tokenizer(plan_model(tiny_llama_dir))
    loaded = load_for_training(plan_model(tiny_llama_dir), None, None, tokenizer)
    assert loaded.params.trainable == loaded.params.total


def test_encoders_load_for_masked_lm_and_classification(tiny_bert_dir: Path) -> None:
    import torch

    mlm = plan_model(tiny_bert_dir, task="masked_lm")
    tokenizer = prepare_tokenizer(mlm)
    loaded = load_for_training(mlm, dataclasses.replace(LORA, task_type="FEATURE_EXTRACTION"), None, tokenizer)
    batch = loaded.tokenizer(["TP53 binds DNA"], return_tensors="pt")
    out = loaded.model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(out.loss)
    cls = plan_model(tiny_bert_dir, task="sequence_classification", num_labels=3)
    loaded = load_for_training(cls, dataclasses.replace(LORA, task_type="SEQ_CLS"), None, prepare_tokenizer(cls))
    assert loaded.model(**batch).logits.shape == (1, 3)


def test_unknown_builtin_model_is_refused() -> None:
    with pytest.raises(ForgeRuntimeError, match="unknown built-in"):
        resolve_source("forge:huge-llama")


def test_a_model_folder_with_broken_weights_is_a_clear_error(tmp_path: Path, tiny_llama_dir: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_llama_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    tokenizer = prepare_tokenizer(plan_model(broken))
    with pytest.raises(ForgeRuntimeError, match="cannot load the model"):
        load_for_training(plan_model(broken), None, None, tokenizer)
