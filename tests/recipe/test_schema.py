"""The checked-in JSON Schema and README reference stay in step with the typed models."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from forge.recipe import schema as schema_module
from forge.recipe.reference import README_FILE, SCHEMA_FILE, readme_with_reference, schema_text

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_schema_matches_models() -> None:
    assert (ROOT / SCHEMA_FILE).read_text(encoding="utf-8") == schema_text(), \
        "schemas/recipe.schema.json is stale: run `forge schema --write`"


def test_readme_reference_matches_models() -> None:
    readme = (ROOT / README_FILE).read_text(encoding="utf-8")
    assert readme == readme_with_reference(readme), "README recipe reference is stale: run `forge schema --write`"


def test_schema_is_2020_12_and_forbids_unknown_keys() -> None:
    schema = json.loads(schema_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["additionalProperties"] is False
    for name, definition in schema["$defs"].items():
        if definition.get("type") == "object":
            assert definition.get("additionalProperties") is False, name


def every_section_model() -> list[type[BaseModel]]:
    return [v for v in vars(schema_module).values()
            if isinstance(v, type) and issubclass(v, schema_module.Section) and v is not schema_module.Section]


@pytest.mark.parametrize("model", every_section_model(), ids=lambda m: m.__name__)
def test_every_field_has_a_description(model: type[BaseModel]) -> None:
    missing = [name for name, field in model.model_fields.items() if not field.description]
    assert missing == []


@pytest.mark.parametrize("path", sorted((ROOT / "recipes").rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_files_match_json_schema(path: Path) -> None:
    validator = jsonschema.Draft202012Validator(json.loads(schema_text()))
    errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
    assert errors == []


def test_json_schema_catches_misspelt_key_and_bad_step_argument() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(schema_text()))
    assert not validator.is_valid({"lora": {"rr": 3}})
    assert not validator.is_valid({"preprocess": [{"step": "remove_citations", "bogus": 1}]})
    assert validator.is_valid({"preprocess": [{"step": "mine", "module": "my_steps"}]})
