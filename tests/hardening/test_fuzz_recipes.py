"""Property-based tests of the recipe loader and validator: random YAML, mutations of every shipped recipe,
random `extends` graphs and overrides. Whatever the input, `forge validate` exits 0 or 2, prints each problem
as one `FILE:LINE:COL: ...` line, never a traceback, never hangs, and a recipe it accepts compiles to a plan.

CI runs ~100-200 examples per property; FORGE_FUZZ_EXAMPLES=5000 makes a long run.
"""
from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz_support import REPO, SHIPPED, check_contract, forge_validate, fuzz_examples, validates_and_compiles

SETTINGS = dict(deadline=None, derandomize=False, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])
_counter = itertools.count()

# ------------------------------------------------------------------------------------------ value strategies
ODD_TEXT = st.sampled_from(["", " ", "\t", "\u0000", "\u200b", "\ufeff", "\u202e", "é", "ǅ", "𝔘𝔫𝔦", "🧬" * 3,
                            "\ud7ff", "a\nb", "a\rb", "\u2028", "\u0085", "null", "~", "yes", "no", "1e999",
                            "-.inf", ".nan", "0x1F", "0o17", "1_000", "2001-12-14", "*a", "&a", "!delete",
                            "{a: 1}", "[1", "'", '"', "#", ": x", "- x", "? x", "|", ">", "%YAML 1.2",
                            "forge:tiny-llama", "../" * 30, "/etc/passwd", "~/x", "C:\\x"])
LONG_TEXT = st.builds(lambda piece, n: piece * n, st.sampled_from(["x", "é", "🧬", "a b", "../", "\n"]),
                      st.integers(1000, 200_000))
TEXT = st.one_of(st.text(max_size=40), ODD_TEXT, LONG_TEXT)
NUMBERS = st.one_of(st.integers(), st.integers(min_value=-10**400, max_value=10**400),
                    st.sampled_from([0, -1, 1, 2**31, 2**63, 2**64 + 1, 10**30]),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e308, -1e-308, 5e-324]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)


def _key_names() -> list[str]:
    from forge.recipe.schema import Recipe
    from pydantic import BaseModel

    names: set[str] = set()

    def walk(model: type[BaseModel]) -> None:
        for name, field in model.model_fields.items():
            names.add(name)
            for sub in getattr(field.annotation, "__args__", ()) + (field.annotation,):
                if isinstance(sub, type) and issubclass(sub, BaseModel) and sub is not model:
                    walk(sub)
            args = getattr(field.annotation, "__args__", ())
            for a in args:
                for inner in getattr(a, "__args__", ()):
                    if isinstance(inner, type) and issubclass(inner, BaseModel):
                        walk(inner)

    walk(Recipe)
    return sorted(names)


KEYS = st.one_of(st.sampled_from(_key_names()), st.text(max_size=12), ODD_TEXT)


def values(depth: int = 4) -> st.SearchStrategy[Any]:
    return st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(KEYS, inner, max_size=4)),
                        max_leaves=12 if depth else 1)


def deep(depth: int, leaf: Any = 1, as_list: bool = False) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"k": value}
    return value


MUTATIONS = ("delete", "wrong_type", "unknown_key", "huge_number", "deep_nesting", "long_string", "odd_unicode",
             "replace_section", "null")


def dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=10**6)


def paths_of(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path and list index in a parsed document."""
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for k, v in data.items():
            out += paths_of(v, prefix + (k,))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += paths_of(v, prefix + (i,))
    return out


def mutate(data: dict[str, Any], path: tuple[Any, ...], kind: str, draw: Any) -> None:
    holder: Any = data
    for part in path[:-1]:
        holder = holder[part]
    key = path[-1]
    if kind == "delete":
        del holder[key]
    elif kind == "wrong_type":
        holder[key] = draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(KEYS, SCALARS, max_size=3)))
    elif kind == "unknown_key":
        target = holder[key] if isinstance(holder[key], dict) else holder
        if isinstance(target, dict):
            target[draw(KEYS)] = draw(SCALARS)
        else:
            target.append({draw(KEYS): draw(SCALARS)})
    elif kind == "huge_number":
        holder[key] = draw(st.sampled_from([10**100, -(10**100), 1e308, float("inf"), float("-inf"), float("nan"),
                                            2**64, -(2**63) - 1]))
    elif kind == "deep_nesting":
        holder[key] = deep(draw(st.integers(1, 200)), leaf=draw(SCALARS), as_list=draw(st.booleans()))
    elif kind == "long_string":
        holder[key] = draw(LONG_TEXT)
    elif kind == "odd_unicode":
        holder[key] = draw(ODD_TEXT)
    elif kind == "replace_section":
        holder[key] = draw(values())
    elif kind == "null":
        holder[key] = None


@pytest.fixture(scope="module")
def recipes_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of recipes/ (with the demo corpus beside it, as in the repository) to write mutants into."""
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(REPO / "recipes", root / "recipes")
    (root / "examples" / "data").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "data" / "high_quality_papers_demo.json", root / "examples" / "data")
    return root / "recipes"


# ------------------------------------------------------------------------------------------------ properties
def test_every_shipped_recipe_validates_and_compiles() -> None:
    assert len(SHIPPED) >= 6
    for path in SHIPPED:
        assert validates_and_compiles(path).code == 0, path
    # one root: every other shipped recipe extends another, so each is validated as part of its children too
    roots = [p.name for p in SHIPPED if "extends" not in (yaml.safe_load(p.read_text(encoding="utf-8")) or {})]
    assert roots == ["defaults.yaml"]


@settings(max_examples=fuzz_examples(200), **SETTINGS)
@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                      values().map(dump)))
def test_random_yaml_documents(recipes_copy: Path, text: str) -> None:
    path = recipes_copy / f"random-{next(_counter)}.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    validates_and_compiles(path)


@settings(max_examples=fuzz_examples(100), **SETTINGS)
@given(raw=st.binary(max_size=400))
def test_random_bytes(recipes_copy: Path, raw: bytes) -> None:
    path = recipes_copy / f"bytes-{next(_counter)}.yaml"
    path.write_bytes(raw)
    validates_and_compiles(path)


@settings(max_examples=fuzz_examples(200), **SETTINGS)
@given(data=st.data())
def test_mutated_shipped_recipes(recipes_copy: Path, data: st.DataObject) -> None:
    source = data.draw(st.sampled_from(SHIPPED), label="recipe")
    folder = recipes_copy / source.parent.relative_to(REPO / "recipes")
    doc = yaml.safe_load(source.read_text(encoding="utf-8"))
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = paths_of(doc)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        mutate(doc, path, data.draw(st.sampled_from(MUTATIONS), label="kind"), data.draw)
    target = folder / f"mutant-{next(_counter)}.yaml"
    target.write_text(dump(doc), encoding="utf-8")
    validates_and_compiles(target)


@settings(max_examples=fuzz_examples(150), **SETTINGS)
@given(data=st.data())
def test_textual_edits_of_shipped_recipes(recipes_copy: Path, data: st.DataObject) -> None:
    """Cut, insert and duplicate raw text: broken indentation, stray tags and anchors, half lines."""
    source = data.draw(st.sampled_from(SHIPPED), label="recipe")
    folder = recipes_copy / source.parent.relative_to(REPO / "recipes")
    text = source.read_text(encoding="utf-8")
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        i = data.draw(st.integers(0, len(text)), label="at")
        j = data.draw(st.integers(i, min(len(text), i + 80)), label="to")
        insert = data.draw(st.one_of(ODD_TEXT, st.text(max_size=20), st.just(text[i:j])), label="insert")
        text = text[:i] + insert + (text[j:] if data.draw(st.booleans(), label="replace") else text[i:])
    target = folder / f"edited-{next(_counter)}.yaml"
    target.write_text(text, encoding="utf-8", errors="surrogatepass")
    validates_and_compiles(target)


@settings(max_examples=fuzz_examples(150), **SETTINGS)
@given(data=st.data())
def test_random_extends_graphs(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    """n files, each extending a random list of the others (itself included, so cycles), missing files,
    `..` paths and folders; the body of each is a random part of a valid recipe or a random value."""
    root = tmp_path_factory.mktemp("graph")
    (root / "sub").mkdir()
    n = data.draw(st.integers(1, 6), label="files")
    names = [("sub/" if data.draw(st.booleans(), label="in sub") else "") + f"r{i}.yaml" for i in range(n)]
    bodies = [
        {"data": {"sources": [{"path": "papers.json"}]}},
        {"model": {"name_or_path": "forge:tiny-llama"}},
        {"lora": {"r": 8}},
        {"training": {"max_steps": 3}},
        {"run": {"name": "graph"}},
    ]
    for i, name in enumerate(names):
        here = (root / name).parent
        parents = data.draw(st.lists(st.one_of(st.sampled_from(names), st.sampled_from(["missing.yaml", "", ".", "sub",
                                                                                         "../r0.yaml", "r0.yaml"])),
                                     max_size=3), label=f"parents {i}")
        rel = [p if p in ("missing.yaml", "", ".", "sub", "../r0.yaml", "r0.yaml")
               else str(Path(Path(root / p).relative_to(root)).as_posix()) if here == root
               else "../" + p for p in parents]
        body: dict[str, Any] = {}
        for section in data.draw(st.lists(st.sampled_from(bodies), max_size=3), label=f"body {i}"):
            body.update(section)
        if data.draw(st.booleans(), label=f"random {i}"):
            body.update(data.draw(st.dictionaries(st.sampled_from(["lora", "extends", "data", "x"]), values(),
                                                  max_size=2), label=f"extra {i}"))
        shape = data.draw(st.sampled_from(["list", "str", "none", "odd"]), label=f"shape {i}")
        extends: Any = rel if shape == "list" else (rel[0] if rel else None) if shape == "str" else \
            None if shape == "none" else data.draw(SCALARS, label="odd extends")
        if extends is not None or shape == "odd":
            body = {"extends": extends, **body}
        (root / name).write_text(dump(body), encoding="utf-8")
    validates_and_compiles(root / names[-1])


@settings(max_examples=fuzz_examples(150), **SETTINGS)
@given(overrides=st.lists(st.one_of(
    st.text(max_size=40),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["lora.r", "optimizer.lr", "data.sources.0.path", "run.name",
                                                         "training.micro_batch_size", "data.sources.5", "lora",
                                                         "data.sources", "tracking.tags.x", "preprocess.0.step",
                                                         "model.tiny.hidden_size", "serving.api_key_env", "x.y",
                                                         "lora.r.x", "data.sources.-1.path", "0", ""]),
              st.one_of(TEXT, NUMBERS.map(str), values().map(lambda v: yaml.safe_dump(v, default_flow_style=True,
                                                                                        width=10**6).strip()))),
    st.builds(lambda k: f"~{k}", st.sampled_from(["lora", "data", "data.sources.0", "data.sources.9", "model",
                                                   "lora.r", "run.name", "extends", "tracking.tags.x"]))), max_size=4))
def test_random_overrides(overrides: list[str]) -> None:
    validates_and_compiles(REPO / "recipes" / "quickstart.yaml", tuple(overrides))


# ---------------------------------------------------------------------------------------------- edge cases
@pytest.mark.parametrize("body", [
    "a: 1\n" * 1 + "x: " + "[" * 5000 + "]" * 5000,
    "x: " + "{a: " * 2000 + "1" + "}" * 2000,
    "a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
    "a: &a {x: 1}\nb: *a\nc: *b\n",
    "data:\n  sources:\n    - &s {path: p.json}\n    - *s\nmodel: {name_or_path: forge:tiny-llama}\n",
    "? [a, b]\n: 1\n",
    "? {a: 1}\n: 1\n",
    "1: 2\n",
    "null: 1\n",
    "\"a\\nb\": 1\n",
    "lora:\n  \"r\\u2028x\": 1\n",
    "--- a\n--- b\n",
    "%TAG ! tag:yaml.org,2002:python/\n---\na: !object:os.system x\n",
    "\t\tx: 1\n",
    "data: {sources: [{path: p}]}\nmodel: {name_or_path: x}\nrun: {name: \"a\\nb\"}\n",
    "data: {sources: [{path: p}]}\nmodel: {name_or_path: x}\nrun: {output_dir: \"\\0\"}\n",
    "data: {sources: [{path: \"\\0\"}]}\nmodel: {name_or_path: \"\\0\"}\n",
    "data: {sources: [{path: p}]}\nmodel: {name_or_path: x}\ntraining: {max_steps: 1e400}\n",
    "data: {sources: [{path: p}]}\nmodel: {name_or_path: x}\ntraining: {max_steps: " + "9" * 5000 + "}\n",
    "data: {sources: [{path: p}]}\nmodel: {name_or_path: x}\noptimizer: {lr: .nan}\n",
    "data: {sources: [{path: p}]}\nmodel: {name_or_path: x}\nextends: []\n",
    "data: {sources: [{path: p}]}\nmodel: {name_or_path: x}\npreprocess: [{step: chunk, \"a\\nb\": 1}]\n",
    "data: {sources: [{path: p}]}\nmodel: {name_or_path: x}\ntracking: {tags: {\"a\\nb\": c}}\n",
    "data: {sources: [{path: p}]}\nmodel: {name_or_path: x}\npreprocess: [{step: \"no\\nsuch\"}]\n",
])
def test_edge_cases(recipes_copy: Path, body: str) -> None:
    path = recipes_copy / f"edge-{next(_counter)}.yaml"
    path.write_text(body, encoding="utf-8")
    validates_and_compiles(path)


@pytest.mark.parametrize("body", [
    "data: {sources: [{path: p}]}\nmodel: !!python/object/apply:os.system [\"echo pwned\"]\n",
    "x: !!python/name:os.system\n",
    "x: !!binary aGVsbG8=\n",
    "x: !!set {a, b}\n",
    "x: !!omap [{a: 1}]\n",
])
def test_subprocess_validate_keeps_the_contract(tmp_path: Path, body: str) -> None:
    """A handful through the real `forge` entry point: no traceback on stderr, exit 2."""
    path = tmp_path / "bad.yaml"
    path.write_text(body, encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "forge", "validate", str(path)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    from fuzz_support import Outcome

    check_contract(Outcome(done.returncode, done.stdout, done.stderr))
    assert done.returncode == 2


def test_main_does_not_leak_exceptions_for_a_directory_or_missing_file(tmp_path: Path) -> None:
    for target in (tmp_path, tmp_path / "missing.yaml", tmp_path / "dir.yaml"):
        if target.name == "dir.yaml":
            target.mkdir()
        outcome = forge_validate(target)
        check_contract(outcome)
        assert outcome.code == 2


@pytest.mark.parametrize("overrides", [("lora=[]", "lora.r="), ("lora=", "lora.r="), ("lora=x", "lora.r=4"),
                                       ("lora=", "~lora.r"), ("data.sources=5", "~data.sources.0.path"),
                                       ("\t",), ("-x=1",), ("~",), ("=1",)])
def test_override_regressions(overrides: tuple[str, ...]) -> None:
    """Found by the fuzzer: a key set below a section that an earlier override made a value or a list."""
    validates_and_compiles(REPO / "recipes" / "quickstart.yaml", overrides)
