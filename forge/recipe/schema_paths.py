"""Walking the recipe schema by key path: the model, list, dict or scalar type a path names, and why an
override's path names no recipe key. Loading (overrides) and validation (error messages) both walk it."""
from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

from forge.recipe.errors import did_you_mean, dotted
from forge.recipe.schema import Recipe


def schema_node(parts: list[Any]) -> Any:
    """The model class, or list/dict marker, or scalar type found at a dotted path of the schema."""
    node: Any = Recipe
    for part in parts:
        node = _step(node, part)
        if node is None:
            return None
    return node


def _unwrap(annotation: Any) -> Any:
    """Strip Optional and pick the structured member of a union."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        structured = [m for m in members if typing.get_origin(m) in (list, dict)
                      or (isinstance(m, type) and issubclass(m, BaseModel))]
        return _unwrap(structured[0]) if structured else members[0]
    return annotation


def _step(node: Any, part: Any) -> Any:
    if isinstance(node, type) and issubclass(node, BaseModel):
        if node.model_config.get("extra") == "allow" and part not in node.model_fields:
            return Any
        field = node.model_fields.get(part) if isinstance(part, str) else None
        return _unwrap(field.annotation) if field else None
    origin = typing.get_origin(node)
    if origin is list and isinstance(part, int):
        return _unwrap(typing.get_args(node)[0])
    if origin is dict and isinstance(part, str):
        return _unwrap(typing.get_args(node)[1])
    if node is Any:
        return Any
    return None


def schema_path_issue(parts: list[Any], data: dict[str, Any]) -> tuple[str, str] | None:
    """Why `parts` cannot be overridden (message, hint), or None when it names a recipe key."""
    node: Any = Recipe
    value: Any = data
    for i, part in enumerate(parts):
        nxt = _step(node, part)
        if nxt is None:
            if isinstance(node, type) and issubclass(node, BaseModel) and isinstance(part, str):
                return f"no such key {part!r} in {dotted(tuple(parts[:i])) or 'the recipe'}", \
                    did_you_mean(part, node.model_fields)
            if typing.get_origin(node) is list:
                return f"{dotted(tuple(parts[:i]))} is a list: address an item by its index", ""
            return f"{dotted(tuple(parts[:i]))} holds a value, not a section", ""
        if isinstance(part, int) and (not isinstance(value, list) or part >= len(value)):
            return f"no item {part} in {dotted(tuple(parts[:i]))}", ""
        node = nxt
        value = value.get(part) if isinstance(value, dict) else \
            value[part] if isinstance(value, list) and isinstance(part, int) else None
    return None
