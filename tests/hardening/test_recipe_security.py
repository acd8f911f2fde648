"""Recipes are data, not code: YAML object tags are refused, user code runs only from a `module:` the recipe
names, and paths that leave a recipe's folder through a symlink are reported (docs/security.md)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fuzz_support import REPO, check_contract, forge_validate

FORGE = str(Path(sys.executable).with_name("forge"))
BODY = "data: {sources: [{path: papers.json}]}\nmodel: {name_or_path: forge:tiny-llama}\n"


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!python/object/new:os.system",
                                 "!!python/name:os.system", "!!python/module:os", "!!python/object:os.PathLike",
                                 "!<tag:yaml.org,2002:python/object/apply:os.system>"])
def test_object_construction_tags_are_refused(tmp_path: Path, tag: str) -> None:
    marker = tmp_path / "pwned"
    recipe = tmp_path / "evil.yaml"
    recipe.write_text(BODY + f"run: {{description: {tag} [\"touch {marker}\"]}}\n")
    outcome = forge_validate(recipe)
    check_contract(outcome)
    assert outcome.code == 2
    assert "evil.yaml:3:" in outcome.stderr and "unsupported YAML tag" in outcome.stderr
    assert not marker.exists()


def test_object_tags_in_overrides_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    outcome = forge_validate(REPO / "recipes" / "quickstart.yaml",
                             overrides=(f"run.description=!!python/object/apply:os.system [\"touch {marker}\"]",))
    check_contract(outcome)
    assert outcome.code == 2 and "<overrides>:1:1: run.description: unsupported YAML tag" in outcome.stderr
    assert not marker.exists()


PLANTED = "import pathlib\npathlib.Path({marker!r}).write_text('imported {name}')\n"
PLANT_NAMES = ["steps", "chunk", "recipe", "papers", "yaml", "pydantic", "forge_steps", "sitecustomize",
               "usercustomize", "conftest", "loss", "losses", "causal_lm", "strip_markup", "__init__", "quickstart"]


def _plant(folder: Path, marker_dir: Path) -> None:
    """Python files next to the recipe (and in a package folder) that leave a marker when imported."""
    for name in PLANT_NAMES:
        (folder / f"{name}.py").write_text(PLANTED.format(marker=str(marker_dir / name), name=name))
    (folder / "forge").mkdir()
    (folder / "forge" / "__init__.py").write_text(PLANTED.format(marker=str(marker_dir / "forge-pkg"), name="forge"))


def test_a_recipe_without_module_imports_nothing_beside_it(tmp_path: Path) -> None:
    project, markers = tmp_path / "project", tmp_path / "markers"
    project.mkdir(), markers.mkdir()
    _plant(project, markers)
    (project / "papers.json").write_text('["BRCA1 regulates DNA repair in breast cells."]')
    recipe = project / "quickstart.yaml"
    recipe.write_text(textwrap.dedent("""\
        extends: %s
        data: {sources: [{path: papers.json}]}
        preprocess: [{step: strip_markup}, {step: chunk}]
        training: {loss: causal_lm}
        """) % (REPO / "recipes" / "quickstart.yaml"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for verb in (["validate", str(recipe)], ["plan", str(recipe)], ["plan", str(recipe), "--json"], ["steps"]):
        done = subprocess.run([FORGE, *verb], cwd=project, capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        assert not list(markers.iterdir()), f"forge {verb[0]} imported {[p.name for p in markers.iterdir()]}"
    # In-process too: resolving the steps and the loss imports only Forge's own code.
    from forge.data.preprocess import resolve_steps
    from forge.recipe.validate import resolve
    from forge.train.losses import loss_function

    cwd = os.getcwd()
    os.chdir(project)
    try:
        recipe_obj = resolve(recipe).recipe
        resolve_steps(recipe_obj.preprocess)
        loss_function(recipe_obj.training.loss, recipe_obj.training.loss_module)
    finally:
        os.chdir(cwd)
    assert not list(markers.iterdir())


def test_a_module_the_recipe_names_is_imported(tmp_path: Path) -> None:
    """The control for the test above: naming the file is what makes it run."""
    markers = tmp_path / "markers"
    markers.mkdir()
    (tmp_path / "my_step.py").write_text(
        PLANTED.format(marker=str(markers / "my_step"), name="my_step")
        + "from forge.data.steps import STEPS\nfrom pydantic import BaseModel\n"
        "class P(BaseModel):\n    pass\n"
        "@STEPS.register('hardening_marker_step', P)\ndef step(papers, params, context):\n    return papers\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(BODY + "preprocess: [{step: hardening_marker_step, module: my_step.py}]\n")
    (tmp_path / "papers.json").write_text("[]")  # validate checks that the data path exists
    from forge.data.preprocess import resolve_steps
    from forge.recipe.validate import resolve

    from forge.data.steps import STEPS

    assert forge_validate(recipe).code == 0
    assert not (markers / "my_step").exists(), "validate must not import user code"
    try:
        resolve_steps(resolve(recipe).recipe.preprocess)
        assert (markers / "my_step").read_text() == "imported my_step"
    finally:  # the registry is process-wide (the generated schema lists its steps): leave it as it was
        STEPS._entries.pop("hardening_marker_step", None)


# --------------------------------------------------------------------------------------- paths and symlinks
@pytest.fixture
def linked(tmp_path: Path) -> tuple[Path, Path]:
    """project/ with a `shared` symlink to a folder outside it, holding papers and a parent recipe."""
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir(), outside.mkdir()
    (outside / "papers.json").write_text("[]")
    (outside / "base.yaml").write_text(BODY)
    os.symlink(outside, project / "shared")
    return project, outside


def test_symlink_escape_of_a_data_path_is_reported(linked: tuple[Path, Path]) -> None:
    project, outside = linked
    recipe = project / "r.yaml"
    recipe.write_text("data: {sources: [{path: shared/papers.json}]}\nmodel: {name_or_path: forge:tiny-llama}\n")
    outcome = forge_validate(recipe)
    assert outcome.code == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    assert lines[0].endswith(": ok")
    assert len(lines) == 2 and lines[1].startswith(f"{recipe}:1:19: data.sources.0.path: note: resolves through a "
                                                   f"symlink to {outside / 'papers.json'}, outside ")
    # the path is kept as written (the symlink is followed when the file is read)
    from forge.recipe.validate import resolve

    assert resolve(recipe).recipe.data.sources[0].path == str(project / "shared" / "papers.json")


def test_symlink_escape_of_extends_is_reported(linked: tuple[Path, Path]) -> None:
    project, outside = linked
    recipe = project / "r.yaml"
    recipe.write_text("extends: shared/base.yaml\n")
    outcome = forge_validate(recipe)
    assert outcome.code == 0, outcome.stderr
    assert f"r.yaml:1:1: extends: note: resolves through a symlink to {outside / 'base.yaml'}" in outcome.stdout
    # the parent's own relative paths stay relative to where the parent really is
    from forge.recipe.validate import resolve

    assert resolve(recipe).recipe.data.sources[0].path == str(outside / "papers.json")


def test_dotdot_and_absolute_paths_are_allowed_without_notes(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "recipes").mkdir()
    recipe = tmp_path / "recipes" / "r.yaml"
    for name in ("a.json", "b.json"):  # validate checks that data paths exist
        (tmp_path / "data" / name).write_text("[]")
    recipe.write_text(f"data: {{sources: [{{path: ../data/a.json}}, {{path: {tmp_path / 'data' / 'b.json'}}}]}}\n"
                      "model: {name_or_path: forge:tiny-llama}\n")
    outcome = forge_validate(recipe)
    assert outcome.code == 0 and outcome.stdout.splitlines() == [f"{recipe}: ok"]


def test_a_key_overridden_by_a_child_drops_the_parents_note(linked: tuple[Path, Path]) -> None:
    project, _ = linked
    (project / "parent.yaml").write_text("data: {sources: [{path: shared/papers.json}]}\n"
                                         "model: {name_or_path: forge:tiny-llama}\n")
    child = project / "child.yaml"
    child.write_text("extends: parent.yaml\ndata: {sources: [{path: local.json}]}\n")
    (project / "local.json").write_text("[]")  # validate checks that the data path exists
    outcome = forge_validate(child)
    assert outcome.code == 0 and "note:" not in outcome.stdout


def test_symlink_loop_and_overlong_parent_are_errors_with_a_place(tmp_path: Path) -> None:
    os.symlink(tmp_path / "loop.yaml", tmp_path / "loop.yaml")
    for parent in ("loop.yaml", "x" * 5000 + ".yaml"):
        recipe = tmp_path / "r.yaml"
        recipe.write_text(f"extends: {parent}\n" + BODY)
        outcome = forge_validate(recipe)
        check_contract(outcome)
        assert outcome.code == 2 and "r.yaml:1:1: extends:" in outcome.stderr
