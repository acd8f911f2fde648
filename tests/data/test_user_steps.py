"""Steps of one's own: registered by a module the recipe names or by a `forge.steps` entry point, run in
recipe order with the built-in steps, over processes too; every failure names the step."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from data_support import paper
from forge.data.errors import DataError
from forge.data.preprocess import resolve_steps, run_steps
from forge.data.steps import STEPS, StepContext
from forge.recipe.schema import PreprocessStep

USER_STEPS = '''
from pydantic import Field

from forge.data.steps import STEPS, Dropped, StepParams, per_paper, text_step


class AppendParams(StepParams):
    suffix: str = Field("!", description="Text added to every abstract.")


@STEPS.register("{prefix}append", AppendParams)
@text_step
def append(text, params, context):
    """Append a suffix to every piece of text."""
    return text + params.suffix


class DropIdsParams(StepParams):
    ids: list[str] = Field(default_factory=list)


@STEPS.register("{prefix}drop_ids", DropIdsParams)
@per_paper
def drop_ids(paper, params, context):
    """Drop the papers with these ids."""
    return Dropped("unwanted") if paper.id in params.ids else paper


@STEPS.register("{prefix}keep_first")
def keep_first(papers, params, context):
    """A whole-corpus step that returns a plain list."""
    return papers[:1]


@STEPS.register("{prefix}pid")
@per_paper
def pid(paper, params, context):
    """Record the process that saw the paper."""
    import os

    return paper.model_copy(update={"metadata": {"pid": os.getpid()}})


@STEPS.register("{prefix}explode")
def explode(papers, params, context):
    """A broken step."""
    raise RuntimeError("boom")
'''


@pytest.fixture(autouse=True)
def own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """User steps registered by a test disappear after it (the registry is shared by the session)."""
    monkeypatch.setattr(STEPS, "_entries", dict(STEPS._entries))


def write_module(folder: Path, prefix: str, name: str = "my_steps.py") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(USER_STEPS.replace("{prefix}", prefix), encoding="utf-8")
    return path


def spec(step: str, module: str | None = None, **params: object) -> PreprocessStep:
    return PreprocessStep.model_validate({"step": step, "module": module, **params})


def test_a_module_path_registers_steps_that_run_in_recipe_order(tmp_path: Path) -> None:
    module = str(write_module(tmp_path, "u1_"))
    assert "u1_append" not in STEPS  # nothing runs until a recipe names the module
    steps = resolve_steps([spec("u1_drop_ids", module, ids=["b"]), spec("remove_citations"),
                           spec("u1_append", module, suffix=" [9]")])
    papers = [paper("a", abstract="BRCA1 [1] rose."), paper("b", abstract="TP53 fell.")]
    result = run_steps(papers, steps, StepContext())
    # The suffix is added after remove_citations ran, so it stays.
    assert [(p.id, p.abstract) for p in result.papers] == [("a", "BRCA1 rose. [9]")]
    assert [(s.name, s.papers_in, s.papers_out, s.dropped) for s in result.steps] == [
        ("u1_drop_ids", 2, 1, {"unwanted": 1}), ("remove_citations", 1, 1, {}), ("u1_append", 1, 1, {})]


def test_a_step_returning_a_list_counts_what_it_left_out(tmp_path: Path) -> None:
    module = str(write_module(tmp_path, "u2_"))
    result = run_steps([paper("a"), paper("b"), paper("c")], resolve_steps([spec("u2_keep_first", module)]),
                       StepContext())
    assert [p.id for p in result.papers] == ["a"] and result.steps[0].dropped == {"dropped": 2}


def test_user_step_arguments_are_validated(tmp_path: Path) -> None:
    module = str(write_module(tmp_path, "u3_"))
    with pytest.raises(DataError, match=r"preprocess\[0\] \(u3_append\): suffx: Extra inputs are not permitted"):
        resolve_steps([spec("u3_append", module, suffx="!")])
    with pytest.raises(DataError, match=r"preprocess\[0\] \(u3_append\): suffix: Input should be a valid string"):
        resolve_steps([spec("u3_append", module, suffix=5)])


def test_a_failing_step_is_named(tmp_path: Path) -> None:
    module = str(write_module(tmp_path, "u4_"))
    steps = resolve_steps([spec("strip_markup"), spec("u4_explode", module)])
    with pytest.raises(DataError, match=r"preprocess\[1\] \(u4_explode\) failed: RuntimeError: boom"):
        run_steps([paper("a")], steps, StepContext())


def test_module_problems_are_data_errors(tmp_path: Path) -> None:
    module = str(write_module(tmp_path, "u5_"))
    with pytest.raises(DataError, match=r"module '.*my_steps.py' did not register a step named 'u5_missing'"):
        resolve_steps([spec("u5_missing", module)])
    with pytest.raises(DataError, match="does not exist"):
        resolve_steps([spec("anything", str(tmp_path / "nowhere.py"))])
    with pytest.raises(DataError, match="cannot import step module 'no_such_forge_steps_pkg'"):
        resolve_steps([spec("anything", "no_such_forge_steps_pkg")])
    clash = tmp_path / "clash.py"
    clash.write_text("from forge.data.steps import STEPS\n\n@STEPS.register('chunk')\ndef chunk(p, a, c):\n"
                     "    return p\n", encoding="utf-8")
    with pytest.raises(DataError, match="registered twice"):
        resolve_steps([spec("chunk", str(clash))])


def test_an_unknown_step_suggests_the_closest_name() -> None:
    with pytest.raises(DataError) as caught:
        resolve_steps([spec("remove_citation")])
    assert "unknown preprocessing step 'remove_citation'" in caught.value.message
    assert caught.value.hint == "did you mean 'remove_citations'?"


def test_a_dotted_module_name_on_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_module(tmp_path / "labsteps", "u6_", name="__init__.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    steps = resolve_steps([spec("u6_append", "labsteps", suffix="?")])
    assert run_steps([paper("a", abstract="x")], steps, StepContext()).papers[0].abstract == "x?"


def test_an_entry_point_registers_a_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An installed package as importlib.metadata sees it: a dist-info folder with entry_points.txt.
    write_module(tmp_path, "u7_", name="forge_plugin_u7.py")
    info = tmp_path / "forge_plugin_u7-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: forge-plugin-u7\nVersion: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[forge.steps]\nu7_append = forge_plugin_u7\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    steps = resolve_steps([spec("u7_append", suffix="+")])  # no module: found by its entry point
    assert run_steps([paper("a", abstract="x")], steps, StepContext()).papers[0].abstract == "x+"


def test_processes_give_the_same_result_as_one(tmp_path: Path, demo_papers: list) -> None:
    module = str(write_module(tmp_path, "u8_"))
    steps = resolve_steps([spec("strip_markup"), spec("u8_drop_ids", module, ids=[demo_papers[3].id]),
                           spec("normalize_whitespace"), spec("u8_append", module, suffix=" END"),
                           spec("deduplicate"), spec("filter_quality", min_score=0.5)])
    papers = demo_papers[:120]
    one = run_steps(papers, steps, StepContext())
    # Two processes for the first three per-paper steps (a stage), then the corpus-wide deduplicate.
    two = run_steps(papers, steps, StepContext(), num_proc=2, min_papers_per_process=40)
    assert [p.id for p in two.papers] == [p.id for p in one.papers]
    assert two.papers == one.papers and all(p.abstract.endswith(" END") for p in two.papers)
    assert [(s.papers_in, s.papers_out, s.dropped) for s in two.steps] == \
        [(s.papers_in, s.papers_out, s.dropped) for s in one.steps]
    assert two.steps[1].dropped == {"unwanted": 1}
    pids = {p.metadata["pid"] for p in run_steps(papers, resolve_steps([spec("u8_pid", module)]), StepContext(),
                                                  num_proc=2, min_papers_per_process=40).papers}
    assert pids and os.getpid() not in pids  # the shards really ran in worker processes


def test_recipe_validation_accepts_a_user_step_without_importing_it(tmp_path: Path) -> None:
    from forge.recipe.validate import resolve

    recipe = tmp_path / "r.yaml"
    recipe.write_text(textwrap.dedent(f"""
        data: {{sources: [{{path: papers.json}}]}}
        preprocess:
          - {{step: u9_append, module: {tmp_path / 'never_written.py'}, suffix: "!"}}
        model: {{name_or_path: forge:tiny-llama}}
        """), encoding="utf-8")
    resolved = resolve(recipe)  # validate trusts the module to register the step; running checks it
    assert resolved.recipe.preprocess[0].step == "u9_append" and "u9_append" not in STEPS


def test_the_worked_example_in_the_docs_runs(tmp_path: Path) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text(encoding="utf-8")
    code = next(block for block in docs.split("```python\n")[1:] if "Our lab's preprocessing steps" in block)
    module = tmp_path / "lab_steps.py"
    module.write_text(code.split("```", 1)[0], encoding="utf-8")
    steps = resolve_steps([spec("mask_patients", str(module), token="<patient>"), spec("drop_retracted", str(module))])
    papers = [paper("a", abstract="Samples PT-12345 and PT-0042 carried BRCA1 variants."),
              paper("b", abstract="Retracted.", metadata={"retracted": True})]
    result = run_steps(papers, steps, StepContext())
    assert [p.abstract for p in result.papers] == ["Samples <patient> and <patient> carried BRCA1 variants."]
    assert result.steps[1].dropped == {"retracted": 1}


def test_papers_cross_processes_as_rows_and_come_back_equal(demo_papers: list) -> None:
    import pickle

    from pydantic import ValidationError

    from forge.data.preprocess import from_rows, to_rows

    originals = [*demo_papers[:20], paper("meta", abstract="x", metadata={"k": [1, 2]}, year=2020)]
    back = from_rows(pickle.loads(pickle.dumps(to_rows(originals))))
    assert back == originals and back is not originals
    assert [p.model_dump() for p in back] == [p.model_dump() for p in originals]
    assert back[0].model_copy(update={"title": "T"}).title == "T" and back[0].genes[0].symbol == originals[0].genes[0].symbol
    with pytest.raises(ValidationError):
        back[0].title = "changed"  # still frozen
