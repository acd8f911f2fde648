"""Fixtures for training tests: the test recipe around the session's tiny LLaMA, fake data, and one
uninterrupted reference run that the resume and fault tests compare against."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
import harness
from harness import CaptureLogits, ReferenceRun

@pytest.fixture
def fake_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training reads the recipe's JSON list of texts instead of going through the data layer."""
    import forge.train.run

    monkeypatch.setattr(forge.train.run, "load_data", harness.fake_bundle)


@pytest.fixture
def write_recipe(tmp_path: Path, tiny_llama_dir: Path, genomics_examples: list[str]) -> Callable[..., Path]:
    """Write the test recipe (tiny LLaMA, 12 steps, checkpoints every 4) under tmp_path."""

    def write(name: str = "t", model: Path | str | None = None, extra: str = "") -> Path:
        return harness.write_recipe(tmp_path, genomics_examples, model or tiny_llama_dir, name, extra)

    return write


@pytest.fixture
def prepare() -> Callable[..., tuple[Any, Any]]:
    """(resolved, plan) for a recipe file and key=value overrides, through the real loader and compiler."""
    return harness.prepare


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path,
                  genomics_examples: list[str]) -> ReferenceRun:
    """The test recipe trained once, uninterrupted, with MLflow tracking to the default SQLite store."""
    import contextlib
    import io

    import forge.train.run

    folder = tmp_path_factory.mktemp("reference")
    recipe = harness.write_recipe(folder, genomics_examples, tiny_llama_dir, name="reference")
    resolved, plan = harness.prepare(recipe, "tracking.enabled=true", "tracking.experiment=forge-tests")
    capture = CaptureLogits()
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(forge.train.run, "load_data", harness.fake_bundle)
        summary = forge.train.run.run_recipe(resolved, plan, resume="never", progress=True, callbacks=[capture])
    return ReferenceRun(recipe, Path(plan.run_dir).resolve(), summary, capture.logits, out.getvalue())
