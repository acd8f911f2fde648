"""The plan's sections as typed records: read by attribute (a renamed field is an error where it is read), and
written out exactly as the dicts they replaced, so that plan.json, `forge plan --json` and the resume checks
against a run directory's plan.json from an earlier Forge see the same values."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from forge.plan import compile_plan
from forge.recipe.validate import resolve

ROOT = Path(__file__).resolve().parents[2]
# Plan.to_dict() of these recipes as written by Forge before the sections were records (plain dicts); the
# estimate's memory text since training.memory holds 4-bit weights dequantized
RECORDED = ROOT / "tests" / "recipe" / "data" / "plans"
CASES = {"quickstart": ("quickstart.yaml", []),
         "genomics_qlora": ("genomics_qlora.yaml", []),
         "genomics_qlora_zero2": ("genomics_qlora_zero2.yaml", []),
         "quickstart_8bit_seqcls": ("quickstart.yaml", ["quantization.mode=8bit", "model.task=sequence_classification",
                                                         "model.num_labels=3"]),
         "genomics_qlora_fsdp": ("genomics_qlora.yaml", ["distribution.strategy=fsdp", "distribution.num_processes=2"])}


def _plan(name: str):
    recipe, overrides = CASES[name]
    return compile_plan(resolve(ROOT / "recipes" / recipe, overrides).recipe)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_plan_is_written_byte_for_byte_as_before(name: str) -> None:
    recorded = (RECORDED / f"{name}.json").read_text(encoding="utf-8")
    assert json.dumps(_plan(name).to_dict(), indent=2) + "\n" == recorded


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_run_directorys_plan_json_from_before_resumes_and_a_changed_shape_does_not(name: str,
                                                                                     tmp_path: Path) -> None:
    from forge.train.checkpoints import ModelChanged, check_model_unchanged, check_processes

    recorded = json.loads((RECORDED / f"{name}.json").read_text(encoding="utf-8"))
    plan = _plan(name)
    notes: list[str] = []
    check_model_unchanged(tmp_path, recorded, plan.to_dict())
    check_processes(tmp_path, recorded, plan.to_dict(), notes)
    assert notes == []
    recipe, overrides = CASES[name]
    changed = compile_plan(resolve(ROOT / "recipes" / recipe, [*overrides, "model.name_or_path=other/model"]).recipe)
    with pytest.raises(ModelChanged, match="model.name_or_path"):
        check_model_unchanged(tmp_path, recorded, changed.to_dict())


def test_the_quantization_keys_of_the_resume_check_are_the_records_fields() -> None:
    from forge.train.checkpoints import MODEL_KEYS, weights_identity

    plan = _plan("genomics_qlora")
    identity = weights_identity(plan.to_dict())
    assert identity["quantization.load_in_4bit"] is True and identity["quantization.bnb_4bit_quant_type"] == "nf4"
    assert identity["quantization.load_in_8bit"] is None and identity["lora.r"] == plan.lora.r
    assert set(MODEL_KEYS["quantization"]) <= {f.name for f in dataclasses.fields(type(plan.quantization))} | {
        "load_in_8bit"}


def test_a_resume_check_key_that_no_plan_record_has_fails_at_import() -> None:
    from forge.train.checkpoints import _check_plan_keys

    _check_plan_keys({"quantization": ("load_in_4bit", "load_in_8bit")})
    with pytest.raises(RuntimeError, match=r"plan.quantization keys \['load_in_4bits'\].*FourBitPlan, EightBitPlan"):
        _check_plan_keys({"quantization": ("load_in_4bits",)})
    with pytest.raises(RuntimeError, match=r"plan.launch keys \['worldsize'\]"):
        _check_plan_keys({"launch": ("strategy", "worldsize")})


def test_sections_are_frozen_records_and_labels_stay_out_of_plan_json() -> None:
    plan = _plan("quickstart")
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.model.task = "masked_lm"  # type: ignore[misc]
    with pytest.raises(TypeError):
        plan.model["task"]  # type: ignore[index]  # a dict key no longer reads it: only the field does
    tagged = dataclasses.replace(plan, model=dataclasses.replace(plan.model, labels=("O", "B-GENE")))
    assert tagged.to_dict() == plan.to_dict() and "labels" not in tagged.to_dict()["model"]


def test_the_launch_says_whether_its_engine_shards_parameters() -> None:
    assert _plan("genomics_qlora_fsdp").launch.shards_parameters
    assert not _plan("genomics_qlora_zero2").launch.shards_parameters
    zero3 = compile_plan(resolve(ROOT / "recipes" / "genomics_qlora_zero2.yaml", ["distribution.zero_stage=3"]).recipe)
    assert zero3.launch.shards_parameters and not _plan("quickstart").launch.shards_parameters
