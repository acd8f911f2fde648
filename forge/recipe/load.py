"""Read recipe files and resolve them into one mapping: YAML with positions, `extends` chains, deletions
of inherited keys, and `key.path=value` overrides from the command line.

Everything here keeps, for every key, the file, line and column that set it, so that later errors point
at the right place even when a value came from a parent recipe.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from forge.recipe.errors import Position, RecipeError, RecipeIssue, did_you_mean, dotted
from forge.recipe.schema import RECIPE_RELATIVE_PATHS
from forge.recipe.schema_paths import schema_path_issue

MAX_FILE_BYTES = 1024 * 1024
MAX_EXTENDS_DEPTH = 8
MAX_VALUES = 100_000  # bounds alias expansion ("billion laughs")
MAX_NESTING = 32
DELETE_TAG = "!delete"
OVERRIDES_FILE = "<overrides>"

# Path fields that are always paths; the others in RECIPE_RELATIVE_PATHS may also be hub ids or keywords
# (model.name_or_path, evaluation.compare_with) and are rewritten only when they look like a local path.
ALWAYS_PATHS = {"data.sources.*.path", "distribution.config_file", "evaluation.data", "model.adapter",
                "evaluation.general.tasks.*"}


class _Delete:
    """Marks a key that a child recipe deletes from what it inherits (`key: !delete`)."""

    def __repr__(self) -> str:
        return "!delete"


DELETE = _Delete()

_BASE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BASE_LOADER):  # type: ignore[misc,valid-type]
    """YAML 1.2 scalars: only true/false are booleans (so `no` stays a string) and 1e-4 is a float."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for ch, resolvers in _BASE_LOADER.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
                              list("-+0123456789."))

_SCALAR_TAGS = {"tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
                "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null"}


@dataclass
class Document:
    """One file's values, with the position of every key and list item."""

    data: dict[str, Any]
    positions: dict[tuple[Any, ...], Position]
    notes: dict[tuple[Any, ...], RecipeIssue] = field(default_factory=dict)


@dataclass
class RawRecipe:
    """A recipe with its parents merged and overrides applied, not yet validated."""

    path: Path
    data: dict[str, Any]
    positions: dict[tuple[Any, ...], Position]
    chain: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    notes: list[RecipeIssue] = field(default_factory=list)  # paths that leave their file's folder via a symlink


def display_path(path: Path) -> str:
    """A path as errors show it: relative to the working directory when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def parse_yaml(text: str, file: str) -> tuple[Any, dict[tuple[Any, ...], Position]]:
    """Parse YAML text into plain values and key positions; raise RecipeError on any problem."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise RecipeError([RecipeIssue(file, line, col, "", f"malformed YAML: {e.problem or e.context}")]) from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow: place it, one line
        line = text.count("\n", 0, e.position) + 1
        col = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        raise RecipeError([RecipeIssue(file, line, col, "", f"malformed YAML: character {e.character!r} is not "
                                                            "allowed (control characters are not)")]) from None
    except yaml.YAMLError as e:
        raise RecipeError([RecipeIssue(file, 1, 1, "", f"malformed YAML: {e}")]) from None
    positions: dict[tuple[Any, ...], Position] = {}
    if node is None:
        return None, positions
    builder = _Builder(file, positions)
    return builder.build(node, (), 0), positions


class _Builder:
    """Turns composed YAML nodes into values, refusing object tags, duplicate keys and alias bombs."""

    def __init__(self, file: str, positions: dict[tuple[Any, ...], Position]) -> None:
        self.file = file
        self.positions = positions
        self.count = 0
        self.constructor = SafeConstructor()

    def _fail(self, node: yaml.Node, path: tuple[Any, ...], message: str) -> RecipeError:
        m = node.start_mark
        return RecipeError([RecipeIssue(self.file, m.line + 1, m.column + 1, dotted(path), message)])

    def build(self, node: yaml.Node, path: tuple[Any, ...], depth: int) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise self._fail(node, path, f"more than {MAX_VALUES} values (runaway aliases?)")
        if depth > MAX_NESTING:
            raise self._fail(node, path, f"nested deeper than {MAX_NESTING} levels")
        if node.tag == DELETE_TAG:
            if not isinstance(node, yaml.ScalarNode) or node.value:
                raise self._fail(node, path, "!delete takes no value (write `key: !delete`)")
            return DELETE
        if isinstance(node, yaml.ScalarNode):
            if node.tag == "tag:yaml.org,2002:timestamp":
                return node.value  # dates stay text; no recipe field is a date
            if node.tag not in _SCALAR_TAGS:
                raise self._fail(node, path, f"unsupported YAML tag {node.tag!r} (recipes hold plain values)")
            try:
                return self.constructor.construct_object(node)
            except (ConstructorError, ValueError) as e:
                raise self._fail(node, path, f"bad {node.tag.rsplit(':', 1)[-1]} value {node.value!r}: {e}") from None
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                raise self._fail(node, path, f"unsupported YAML tag {node.tag!r}")
            items = []
            for i, child in enumerate(node.value):
                self.positions[path + (i,)] = Position(self.file, child.start_mark.line + 1, child.start_mark.column + 1)
                items.append(self.build(child, path + (i,), depth + 1))
            return items
        if node.tag != "tag:yaml.org,2002:map":
            raise self._fail(node, path, f"unsupported YAML tag {node.tag!r}")
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _SCALAR_TAGS:
                raise self._fail(key_node, path, "keys must be plain words")
            key = key_node.value
            if key == "<<":
                raise self._fail(key_node, path, "YAML merge keys (<<) are not supported; use extends")
            if key in mapping:
                raise self._fail(key_node, path + (key,), f"duplicate key {key!r}")
            self.positions[path + (key,)] = Position(self.file, key_node.start_mark.line + 1,
                                                     key_node.start_mark.column + 1)
            mapping[key] = self.build(value_node, path + (key,), depth + 1)
        return mapping


def read_document(path: Path) -> Document:
    """One recipe file as a Document, its relative paths made absolute against its folder."""
    file = display_path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise RecipeError([RecipeIssue(file, 1, 1, "", "not a file")])
        if size > MAX_FILE_BYTES:
            raise RecipeError([RecipeIssue(file, 1, 1, "", f"file is {size / 1e6:.1f} MB; recipes are limited "
                                                            f"to {MAX_FILE_BYTES // 1024} KiB")])
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RecipeError([RecipeIssue(file, 1, 1, "", "no such recipe file")]) from None
    except OSError as e:
        raise RecipeError([RecipeIssue(file, 1, 1, "", f"cannot read: {e.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise RecipeError([RecipeIssue(file, line, col, "", f"not UTF-8 text (byte 0x{raw[e.start]:02x})")]) from None
    data, positions = parse_yaml(text.lstrip("\ufeff"), file)
    if data is None:
        raise RecipeError([RecipeIssue(file, 1, 1, "", "recipe is empty")])
    if not isinstance(data, dict):
        raise RecipeError([RecipeIssue(file, 1, 1, "", f"a recipe is a mapping of sections, got a {_kind(data)}")])
    rewritten = _absolutise_paths(data, path.parent)
    notes = {}
    for key_path, value in rewritten:
        real = symlink_escape(Path(value), path.parent)
        pos = positions.get(key_path)
        if real is not None and pos is not None:
            notes[key_path] = _escape_note(pos, key_path, real, path.parent)
    return Document(data, positions, notes)


def symlink_escape(target: Path, folder: Path) -> Path | None:
    """Where `target` really is, when it is written inside `folder` but a symlink takes it outside; else None.
    A path written with `..` or as an absolute path leaves the folder visibly and is not reported."""
    lexical = Path(os.path.normpath(target))
    try:
        if not lexical.is_relative_to(folder):
            return None
        real = lexical.resolve()
        return None if real.is_relative_to(folder.resolve()) else real
    except (OSError, RuntimeError, ValueError):
        return None


def _escape_note(pos: Position, key_path: tuple[Any, ...], real: Path, folder: Path) -> RecipeIssue:
    return RecipeIssue(pos.file, pos.line, pos.column, dotted(key_path),
                       f"note: resolves through a symlink to {real}, outside {display_path(folder)}/")


def _kind(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(value), "value")


def _absolutise_paths(data: dict[str, Any], folder: Path) -> list[tuple[tuple[Any, ...], str]]:
    """Make the recipe-relative paths absolute; returns (key path, new value) of each one rewritten."""
    rewritten = []
    for pattern in RECIPE_RELATIVE_PATHS:
        for key_path, holder, key in _matches(data, pattern.split(".")):
            value = holder[key]
            if not isinstance(value, str) or not value or os.path.isabs(value) or value.startswith("forge:"):
                continue
            if pattern.endswith("module") and not value.endswith(".py"):
                continue  # a dotted module name is imported, not a file
            if pattern.startswith("evaluation.general.") and not value.lower().endswith((".yaml", ".yml")):
                continue  # a harness task name (arc_easy), not a file
            expanded = os.path.expanduser(value)
            candidate = folder / expanded
            # a .gguf name is always a local file (Forge does not fetch GGUF files from the hub)
            looks_local = value.startswith((".", "~")) or _exists(candidate) or value.lower().endswith(".gguf")
            if pattern in ALWAYS_PATHS or looks_local:
                holder[key] = str(Path(os.path.normpath(candidate if not os.path.isabs(expanded) else expanded)))
                rewritten.append((key_path, holder[key]))
    return rewritten


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for the system, a NUL byte: not a local path
        return False


def _matches(node: Any, parts: list[str], prefix: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any, Any]]:
    """(key path, container, key) addressed by a dotted pattern where * matches every list item."""
    if not parts:
        return []
    head, rest = parts[0], parts[1:]
    if head == "*":
        keys: list[Any] = list(range(len(node))) if isinstance(node, list) else []
    else:
        keys = [head] if isinstance(node, dict) and head in node else []
    if not rest:
        return [(prefix + (k,), node, k) for k in keys]
    return [m for k in keys for m in _matches(node[k], rest, prefix + (k,))]


def _merge(base: dict[str, Any], child: dict[str, Any], positions: dict[tuple[Any, ...], Position],
           child_positions: dict[tuple[Any, ...], Position], prefix: tuple[Any, ...]) -> None:
    """Merge child into base in place: mappings merge, anything else replaces, DELETE removes."""
    for key, value in child.items():
        path = prefix + (key,)
        if value is DELETE:
            base.pop(key, None)
            _drop_positions(positions, path)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            if path in child_positions:
                positions[path] = child_positions[path]
            _merge(base[key], value, positions, child_positions, path)
        else:
            base[key] = _strip_deletes(value)
            _drop_positions(positions, path)
            positions.update({p: pos for p, pos in child_positions.items() if p[: len(path)] == path})


def _strip_deletes(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_deletes(v) for k, v in value.items() if v is not DELETE}
    return value


def _drop_positions(positions: dict[tuple[Any, ...], Position], path: tuple[Any, ...]) -> None:
    for p in [p for p in positions if p[: len(path)] == path]:
        del positions[p]


def _load_chain(path: Path, stack: list[Path], notes: dict[tuple[Any, ...], RecipeIssue] | None = None
                ) -> tuple[dict[str, Any], dict[tuple[Any, ...], Position], list[str]]:
    """The merged data, positions and file chain of `path`; symlink-escape notes are added to `notes`
    (the last file to set a key wins, as for values; `extends` notes are keyed by their file)."""
    notes = {} if notes is None else notes
    doc = read_document(path)
    file = display_path(path)
    parents = doc.data.pop("extends", None)
    ext_pos = doc.positions.get(("extends",), Position(file, 1, 1))
    if parents is None or parents is DELETE:
        parents = []
    elif isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, list) or not all(isinstance(p, str) and p for p in parents):
        raise RecipeError([RecipeIssue(file, ext_pos.line, ext_pos.column, "extends",
                                       "expected a path or a list of paths to parent recipes")])
    merged: dict[str, Any] = {}
    positions: dict[tuple[Any, ...], Position] = {}
    chain: list[str] = []
    for parent in parents:
        try:
            parent_path = (path.parent / parent).resolve()
            found = parent_path.is_file()
        except (OSError, RuntimeError, ValueError) as e:  # a name too long, a symlink loop, a NUL byte
            raise RecipeError([RecipeIssue(file, ext_pos.line, ext_pos.column, "extends",
                                           f"bad parent path {_show_path(repr(parent))}: {getattr(e, 'strerror', e)}")
                               ]) from None
        names = " -> ".join(display_path(p) for p in [*stack, parent_path])
        if parent_path in stack:
            raise RecipeError([RecipeIssue(file, ext_pos.line, ext_pos.column, "extends", f"cycle: {names}")])
        if len(stack) > MAX_EXTENDS_DEPTH:
            raise RecipeError([RecipeIssue(file, ext_pos.line, ext_pos.column, "extends",
                                           f"chain deeper than {MAX_EXTENDS_DEPTH}: {names}")])
        if not found:
            raise RecipeError([RecipeIssue(file, ext_pos.line, ext_pos.column, "extends",
                                           f"parent recipe not found: {_show_path(parent)} (chain: {names})")])
        real = symlink_escape(path.parent / parent, path.parent)
        if real is not None:
            notes[("extends", file, parent)] = _escape_note(ext_pos, ("extends",), real, path.parent)
        data, parent_positions, parent_chain = _load_chain(parent_path, [*stack, parent_path], notes)
        _merge(merged, data, positions, parent_positions, ())
        chain += [c for c in parent_chain if c not in chain]
    _merge(merged, doc.data, positions, doc.positions, ())
    notes.update(doc.notes)
    chain.append(file)
    return merged, positions, chain


def _show_path(text: str) -> str:
    return text if len(text) <= 120 else text[:117] + "..."


def load_recipe(path: str | os.PathLike[str], overrides: list[str] | tuple[str, ...] = ()) -> RawRecipe:
    """Read a recipe, merge its parents, apply overrides; the result is not yet validated."""
    top = Path(path)
    notes: dict[tuple[Any, ...], RecipeIssue] = {}
    data, positions, chain = _load_chain(top.resolve() if top.exists() else top, [top.resolve()], notes)
    raw = RawRecipe(top, data, positions, chain, list(overrides))
    apply_overrides(raw, list(overrides))
    # a note stands while the key it is about still comes from the file it was made for
    raw.notes = [n for k, n in notes.items() if k[0] == "extends" or (
        (pos := raw.positions.get(k)) is not None and (pos.file, pos.line, pos.column) == (n.file, n.line, n.column))]
    run = raw.data.setdefault("run", {})
    if isinstance(run, dict) and not run.get("name"):
        run["name"] = re.sub(r"[^A-Za-z0-9._-]", "-", top.stem).lstrip("._-")[:100] or "run"
    return raw


def apply_overrides(raw: RawRecipe, overrides: list[str]) -> None:
    """Apply `key.path=value` (value parsed as YAML) and `~key.path` (delete) in order."""
    issues = []
    for index, text in enumerate(overrides, start=1):
        where = Position(OVERRIDES_FILE, index, 1)
        delete = text.startswith("~")
        key, sep, value_text = text[1:].partition("=") if delete else text.partition("=")
        shown = dotted(tuple(key.split("."))) if key else ""
        if (not delete and not sep) or (delete and sep) or not key:
            issues.append(RecipeIssue(where.file, index, 1, shown, f"expected key.path=value or ~key.path, got "
                                                                   f"{_show_path(repr(text))}"))
            continue
        parts: list[Any] = [int(p) if p.isdigit() else p for p in key.split(".")]
        problem = schema_path_issue(parts, raw.data)
        if problem:
            issues.append(RecipeIssue(where.file, index, 1, shown, *problem))
            continue
        if delete:
            _delete_path(raw.data, parts)
            _drop_positions(raw.positions, tuple(parts))
            continue
        try:
            value, _ = parse_yaml(value_text, OVERRIDES_FILE)
        except RecipeError as e:
            issues.append(RecipeIssue(where.file, index, 1, shown, e.issues[0].message))
            continue
        _set_path(raw.data, parts, value)
        _drop_positions(raw.positions, tuple(parts))
        raw.positions[tuple(parts)] = where
    if issues:
        raise RecipeError(issues)


def _set_path(data: Any, parts: list[Any], value: Any) -> None:
    for part, following in zip(parts[:-1], parts[1:]):
        if isinstance(data, dict) and isinstance(following, str) and not isinstance(data.get(part), dict):
            data[part] = {}  # a key set inside a section that an earlier override made a value (`lora=`)
        data = data[part] if isinstance(data, list) else data.setdefault(part, {})
    data[parts[-1]] = value


def _delete_path(data: Any, parts: list[Any]) -> None:
    for part in parts[:-1]:
        data = data.get(part, {}) if isinstance(data, dict) else data[part]
        if not isinstance(data, (dict, list)):
            return  # nothing to delete below a plain value
    if isinstance(data, dict):
        data.pop(parts[-1], None)
    elif isinstance(data, list) and isinstance(parts[-1], int) and parts[-1] < len(data):
        del data[parts[-1]]


__all__ = ["DELETE", "Document", "RawRecipe", "display_path", "load_recipe", "parse_yaml", "read_document",
           "did_you_mean"]
