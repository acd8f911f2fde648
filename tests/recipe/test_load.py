"""Reading recipes: YAML positions, extends chains, deletions and overrides."""
from __future__ import annotations

from pathlib import Path

import pytest

from forge.recipe import RecipeError, resolve
from forge.recipe.load import load_recipe



def issues_of(path: Path, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(RecipeError) as info:
        resolve(path, overrides or [])
    return [i.format() for i in info.value.issues]


def test_minimal_recipe_gets_defaults_and_name_from_file(minimal: Path) -> None:
    r = resolve(minimal).recipe
    assert r.run.name == "minimal"
    assert r.lora.r == 16 and r.quantization.mode == "none"
    # data paths are relative to the recipe file
    assert r.data.sources[0].path == str(minimal.parent / "papers.json")


def test_yaml_12_scalars(write, MINIMAL: str) -> None:
    path = write("r.yaml", MINIMAL + "optimizer: {lr: 3e-4}\ntraining: {mixed_precision: no}\n")
    r = resolve(path).recipe
    assert r.optimizer.lr == pytest.approx(3e-4)  # YAML 1.1 would read 3e-4 as a string
    assert r.training.mixed_precision == "no"  # YAML 1.1 would read no as false


def test_child_mapping_merges_and_list_replaces(write, MINIMAL: str) -> None:
    write("base.yaml", MINIMAL + """
lora: {r: 8, alpha: 16, target_modules: [q_proj, v_proj]}
tracking: {tags: {team: genomics}}
""")
    child = write("child.yaml", """
extends: base.yaml
lora: {r: 32, target_modules: [o_proj]}
tracking: {tags: {stage: test}}
""")
    r = resolve(child).recipe
    assert (r.lora.r, r.lora.alpha, r.lora.target_modules) == (32, 16, ["o_proj"])
    assert r.tracking.tags == {"team": "genomics", "stage": "test"}
    assert r.run.name == "child"


def test_parents_apply_in_order_and_chain_is_recorded(write, MINIMAL: str) -> None:
    write("a.yaml", MINIMAL + "lora: {r: 4}\noptimizer: {lr: 0.1}\n")
    write("b.yaml", "lora: {r: 8}\n")
    child = write("c.yaml", "extends: [a.yaml, b.yaml]\n")
    resolved = resolve(child)
    assert resolved.recipe.lora.r == 8 and resolved.recipe.optimizer.lr == 0.1
    assert [Path(c).name for c in resolved.chain] == ["a.yaml", "b.yaml", "c.yaml"]


def test_delete_tag_removes_inherited_key(write, MINIMAL: str) -> None:
    write("base.yaml", MINIMAL + "lora: {r: 64}\ntracking: {tags: {a: '1', b: '2'}}\n")
    child = write("child.yaml", "extends: base.yaml\nlora:\n  r: !delete\ntracking: {tags: {a: !delete }}\n")
    r = resolve(child).recipe
    assert r.lora.r == 16  # back to the default
    assert r.tracking.tags == {"b": "2"}


def test_parent_paths_stay_relative_to_parent(write, tmp_path: Path, MINIMAL: str) -> None:
    write("base/parent.yaml", MINIMAL)
    child = write("variants/child.yaml", "extends: ../base/parent.yaml\n")
    r = resolve(child).recipe
    assert r.data.sources[0].path == str(tmp_path / "base" / "papers.json")


def test_error_in_parent_points_at_parent_line(write, MINIMAL: str) -> None:
    write("base.yaml", MINIMAL + "lora:\n  r: 0\n")
    child = write("child.yaml", "extends: base.yaml\n")
    [issue] = issues_of(child)
    assert issue.endswith("base.yaml:7:3: lora.r: input should be greater than 0 (got 0)")


def test_cycle_is_named(write) -> None:
    write("a.yaml", "extends: b.yaml\n")
    path = write("b.yaml", "extends: a.yaml\n")
    [issue] = issues_of(path)
    assert "extends: cycle: " in issue
    chain = issue.split("cycle: ")[1].split(" -> ")
    assert [Path(p).name for p in chain] == ["b.yaml", "a.yaml", "b.yaml"]


def test_missing_parent_names_chain(write) -> None:
    write("a.yaml", "extends: nowhere.yaml\n")
    path = write("b.yaml", "extends: a.yaml\n")
    [issue] = issues_of(path)
    assert ":1:1: extends: parent recipe not found: nowhere.yaml" in issue
    assert "b.yaml -> " in issue and "a.yaml -> " in issue


def test_over_deep_chain(write, MINIMAL: str) -> None:
    write("r0.yaml", MINIMAL)
    for i in range(1, 12):
        write(f"r{i}.yaml", f"extends: r{i - 1}.yaml\n")
    [issue] = issues_of(Path(write("top.yaml", "extends: r11.yaml\n")))
    assert "chain deeper than 8" in issue


def test_overrides_are_yaml_scalars_applied_last(minimal: Path) -> None:
    r = resolve(minimal, ["lora.r=64", "training.micro_batch_size=auto", "training.effective_batch_size=16",
                          "lora.target_modules=[q_proj, k_proj]", "tracking.uri=null"]).recipe
    assert r.lora.r == 64 and r.training.micro_batch_size == "auto"
    assert r.lora.target_modules == ["q_proj", "k_proj"]


def test_override_deletes_with_tilde(write, MINIMAL: str) -> None:
    path = write("r.yaml", MINIMAL + "lora: {r: 64}\n")
    assert resolve(path, ["~lora.r"]).recipe.lora.r == 16


def test_override_of_unknown_key_is_an_error(minimal: Path) -> None:
    [issue] = issues_of(minimal, ["lora.rank=4"])
    assert issue.startswith("<overrides>:1:1: lora.rank: no such key 'rank' in lora")
    [issue] = issues_of(minimal, ["training.max_seq_length.x=1"])
    assert "holds a value, not a section" in issue
    [issue] = issues_of(minimal, ["data.sources.3.path=x"])
    assert "no item 3" in issue


def test_override_is_validated_like_the_file(minimal: Path) -> None:
    issues = issues_of(minimal, ["lora.r=-1"])
    assert issues == ["<overrides>:1:1: lora.r: input should be greater than 0 (got -1)"]


def test_override_without_equals(minimal: Path) -> None:
    [issue] = issues_of(minimal, ["lora.r"])
    assert "expected key.path=value" in issue


def test_sources_say_where_each_value_came_from(write, MINIMAL: str) -> None:
    write("base.yaml", MINIMAL + "lora:\n  r: 8\n")
    child = write("child.yaml", "extends: base.yaml\noptimizer:\n  lr: 0.01\n")
    sources = resolve(child, ["lora.alpha=4"]).sources()
    assert sources["lora.r"].endswith("base.yaml:7")
    assert sources["optimizer.lr"].endswith("child.yaml:3")
    assert sources["lora.alpha"] == "override 1"
    assert sources["lora.dropout"] == "default"
    assert sources["data.sources.0.path"].endswith("base.yaml:3")


def test_resolved_yaml_reruns_the_same_recipe(write, tmp_path: Path, MINIMAL: str) -> None:
    write("base.yaml", MINIMAL + "lora: {r: 8}\n")
    resolved = resolve(write("child.yaml", "extends: base.yaml\ntraining: {epochs: 2}\n"), ["optimizer.lr=0.05"])
    again = write("again.yaml", resolved.yaml_text)
    assert resolve(again).recipe == resolved.recipe


def test_raw_load_keeps_positions_of_list_items(write, MINIMAL: str) -> None:
    path = write("r.yaml", MINIMAL + "preprocess:\n  - step: a\n  - step: b\n")
    raw = load_recipe(path)
    assert raw.positions[("preprocess", 1)].line == 8
    assert raw.positions[("preprocess", 1, "step")].column == 5


def test_step_and_loss_module_files_are_relative_to_the_recipe(write, MINIMAL) -> None:
    from forge.recipe.load import load_recipe

    recipe = write("r.yaml", MINIMAL + "preprocess:\n  - {step: normalize_whitespace}\n"
                   "  - {step: mine, module: steps.py}\n  - {step: theirs, module: lab.steps}\n"
                   "training: {loss_module: losses.py}\n")
    for name in ("steps.py", "losses.py", "lab.steps"):  # lab.steps exists too: a dotted name stays a name
        (recipe.parent / name).write_text("")
    data = load_recipe(recipe).data
    assert data["preprocess"][1]["module"] == str(recipe.parent / "steps.py")
    assert data["preprocess"][2]["module"] == "lab.steps"
    assert data["training"]["loss_module"] == str(recipe.parent / "losses.py")
