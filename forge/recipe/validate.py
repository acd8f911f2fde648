"""Validate a resolved recipe mapping against the typed schema and the semantic rules, reporting every
problem at once with the file, line and column that set the offending key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from forge.recipe.errors import Position, RecipeError, RecipeIssue, did_you_mean, dotted
from forge.recipe.load import RawRecipe, display_path, load_recipe
from forge.recipe.schema import Recipe
from forge.recipe.schema_paths import schema_node


@dataclass
class Resolved:
    """A valid recipe with its provenance: where each value came from and which files it extends."""

    recipe: Recipe
    path: Path
    chain: list[str]
    overrides: list[str]
    positions: dict[tuple[Any, ...], Position]
    notes: list[RecipeIssue] = field(default_factory=list)  # see forge.recipe.load.symlink_escape

    @property
    def yaml_text(self) -> str:
        """The resolved recipe as YAML: a complete file that re-runs the same thing."""
        data = self.recipe.model_dump(mode="json", exclude={"extends"})
        header = f"# Resolved by Forge from: {' -> '.join(self.chain)}\n"
        if self.overrides:
            header += f"# Overrides: {' '.join(self.overrides)}\n"
        return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=110)

    def sources(self) -> dict[str, str]:
        """For every leaf value: 'FILE:LINE', 'override N' or 'default'."""
        out: dict[str, str] = {}
        for path, _ in _leaves(self.recipe.model_dump(mode="json", exclude={"extends"}), ()):
            pos = self.positions.get(path)
            if pos is None:
                ancestors = [path[:i] for i in range(len(path) - 1, 0, -1)]
                # a leaf inside a list or free-form mapping set by a file takes its container's place
                pos = next((self.positions[a] for a in ancestors if a in self.positions
                            and not _is_section(a)), None)
            out[dotted(path)] = ("default" if pos is None else f"override {pos.line}" if pos.file == "<overrides>"
                                 else f"{pos.file}:{pos.line}")
        return out


def _is_section(path: tuple[Any, ...]) -> bool:
    node = schema_node(list(path))
    return isinstance(node, type) and issubclass(node, BaseModel)


def _leaves(value: Any, path: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in _leaves(v, path + (k,))]
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        return [leaf for i, v in enumerate(value) for leaf in _leaves(v, path + (i,))]
    return [(path, value)]


def resolve(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Resolved:
    """Load, merge, override and validate a recipe; raise RecipeError with every problem found."""
    raw = load_recipe(path, overrides)
    return validate(raw)


def validate(raw: RawRecipe) -> Resolved:
    from forge.recipe.rules import check_rules

    top = display_path(raw.path)
    try:
        recipe = Recipe.model_validate(raw.data)
    except ValidationError as e:
        raise RecipeError(_issues_from_pydantic(e, raw, top)) from None
    issues = [place(raw.positions, top, path, message, hint) for path, message, hint in check_rules(recipe)]
    if issues:
        raise RecipeError(issues)
    return Resolved(recipe, raw.path, raw.chain, raw.overrides, raw.positions, raw.notes)


def place(positions: dict[tuple[Any, ...], Position], top: str, path: tuple[Any, ...], message: str,
          hint: str = "") -> RecipeIssue:
    """An issue at the position of the key that set `path`, or of its nearest ancestor."""
    for i in range(len(path), 0, -1):
        pos = positions.get(tuple(path[:i]))
        if pos:
            return RecipeIssue(pos.file, pos.line, pos.column, dotted(path), message, hint)
    return RecipeIssue(top, 1, 1, dotted(path), message, hint)


def _clean_loc(loc: tuple[Any, ...], data: Any) -> tuple[tuple[Any, ...], bool]:
    """The part of a pydantic error location that addresses the recipe, and whether more (union branch) followed."""
    path: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and len(path) == len(loc) - 1:
            path.append(part)  # a missing or unknown key: the last element names it
            return tuple(path), False
        else:
            return tuple(path), True
        path.append(part)
    return tuple(path), False


def _issues_from_pydantic(error: ValidationError, raw: RawRecipe, top: str) -> list[RecipeIssue]:
    grouped: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for err in error.errors(include_url=False):
        path, _ = _clean_loc(tuple(err["loc"]), raw.data)
        grouped.setdefault(path, []).append(err)
    issues = []
    for path, errs in grouped.items():
        message, hint = _describe(path, errs)
        issues.append(place(raw.positions, top, path, message, hint))
    return issues


def _describe(path: tuple[Any, ...], errs: list[dict[str, Any]]) -> tuple[str, str]:
    kinds = {e["type"] for e in errs}
    first = errs[0]
    if "extra_forbidden" in kinds:
        parent = schema_node(list(path[:-1]))
        fields = list(parent.model_fields) if isinstance(parent, type) and issubclass(parent, BaseModel) else []
        return f"unknown key {path[-1]!r}", did_you_mean(str(path[-1]), fields)
    if kinds == {"missing"}:
        return "required key is missing", ""
    got = _show(first.get("input"))
    if len(errs) > 1:  # a union: say what each branch wanted
        wanted = "; or ".join(dict.fromkeys(_lower(e["msg"]) for e in errs))
        return f"{wanted} (got {got})", ""
    hint = ""
    if first["type"] == "literal_error" and isinstance(first.get("input"), str):
        expected = first.get("ctx", {}).get("expected", "")
        hint = did_you_mean(first["input"], [c.strip(" '") for c in expected.replace(" or ", ",").split(",")])
    return f"{_lower(first['msg'])} (got {got})", hint


def _lower(msg: str) -> str:
    return msg[:1].lower() + msg[1:]


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
