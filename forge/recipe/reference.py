"""Generated files kept in step with the typed schema: `schemas/recipe.schema.json` and the recipe
reference between markers in README.md. `forge schema --write` regenerates both; a test fails on drift.
"""
from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from forge.recipe.schema import Recipe, recipe_json_schema

SCHEMA_FILE = Path("schemas/recipe.schema.json")
README_FILE = Path("README.md")
START, END = "<!-- recipe-reference:start -->", "<!-- recipe-reference:end -->"


def schema_text() -> str:
    return json.dumps(recipe_json_schema(), indent=2, ensure_ascii=False) + "\n"


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:  # a constrained type: its base type
        return _type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(repr(a) for a in args)
    if origin in (typing.Union, __import__("types").UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map of {_type_name(args[1])}"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{json.dumps(value)}`"


def reference_markdown() -> str:
    """One table per recipe section: key, type, default, description."""
    lines = []
    for section, field in Recipe.model_fields.items():
        annotation = typing.get_args(field.annotation)[0] if typing.get_origin(field.annotation) is list \
            else field.annotation
        lines.append(f"\n#### `{section}`\n\n{field.description}\n")
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
            lines += _rows(annotation, section)
        else:
            lines.append(f"Type: {_type_name(field.annotation)}.")
    return "\n".join(lines).strip() + "\n"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}"
        inner = typing.get_args(field.annotation)[0] if typing.get_origin(field.annotation) is list \
            else field.annotation
        if isinstance(inner, type) and issubclass(inner, BaseModel) and inner is not model:
            suffix = "[]" if typing.get_origin(field.annotation) is list else ""
            rows.append(f"| `{key}{suffix}` | section | {_default(field)} | {field.description} |")
            rows += _rows(inner, f"{key}{suffix}")
        else:
            rows.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {field.description} |")
    return rows


def readme_with_reference(readme: str) -> str:
    head, start, rest = readme.partition(START)
    _, end, tail = rest.partition(END)
    if not start or not end:
        raise ValueError(f"README lacks the markers {START} ... {END}")
    return f"{head}{START}\n{reference_markdown()}{END}{tail}"


def write_generated(root: Path) -> list[Path]:
    schema_path = root / SCHEMA_FILE
    schema_path.parent.mkdir(parents=True, exist_ok=True)
    schema_path.write_text(schema_text(), encoding="utf-8")
    readme_path = root / README_FILE
    readme_path.write_text(readme_with_reference(readme_path.read_text(encoding="utf-8")), encoding="utf-8")
    return [schema_path, readme_path]
