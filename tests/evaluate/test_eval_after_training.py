"""`forge run` evaluates the run when it completes and evaluation.enabled is on (training is stubbed here:
this checks the hook in forge/execute.py, not the trainer)."""
from __future__ import annotations

from pathlib import Path

import pytest

from forge.evaluate.errors import EvaluationError


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(f"run: {{name: hook, output_dir: {tmp_path / 'runs'}}}\n"
                    "data: {sources: [{path: papers.json}]}\nmodel: {name_or_path: forge:tiny-llama}\n")
    return path


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Stub training (the summary in calls['summary']) and record the evaluations (answering calls['code'])."""
    import forge.evaluate.run
    import forge.train.run

    state: dict = {"summary": {"status": "completed"}, "code": 0, "evaluated": []}

    def run_recipe(resolved, plan, resume="auto"):  # noqa: ANN001, ANN202
        return dict(state["summary"])

    def eval_command(target):  # noqa: ANN001, ANN202
        state["evaluated"].append(str(target))
        if isinstance(state["code"], Exception):
            raise state["code"]
        return state["code"]

    monkeypatch.setattr(forge.train.run, "run_recipe", run_recipe)
    monkeypatch.setattr(forge.evaluate.run, "eval_command", eval_command)
    return state


def test_a_completed_run_is_evaluated(recipe: Path, calls: dict, tmp_path: Path) -> None:
    from forge.execute import execute

    assert execute(str(recipe), []) == 0
    assert calls["evaluated"] == [str(tmp_path / "runs" / "hook")]
    calls["code"] = 1  # a quality gate failed: forge run exits 1 although training completed
    assert execute(str(recipe), []) == 1


def test_no_evaluation_when_disabled_or_when_training_failed(recipe: Path, calls: dict) -> None:
    from forge.execute import execute

    assert execute(str(recipe), ["evaluation.enabled=false"]) == 0
    calls["summary"] = {"status": "failed"}
    assert execute(str(recipe), []) == 1
    calls["summary"] = {"status": "interrupted", "exit_code": 130}
    assert execute(str(recipe), []) == 130
    assert calls["evaluated"] == []


def test_an_evaluation_that_cannot_run_says_the_run_is_kept(recipe: Path, calls: dict, tmp_path: Path) -> None:
    from forge.execute import execute

    calls["code"] = EvaluationError("no examples with gold gene annotations", "set evaluation.data")
    with pytest.raises(EvaluationError) as raised:
        execute(str(recipe), [])
    assert str(raised.value) == ("training finished, but the evaluation could not run: no examples with gold gene "
                                 f"annotations; set evaluation.data; then run forge eval {tmp_path / 'runs' / 'hook'}")
