"""`forge eval` and `forge serve` take RUN_DIR|RECIPE: a run directory (its saved recipe.yaml) or the recipe
that trained it. One resolver for both, raising the caller's error type."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from forge.errors import ForgeError


def resolve_run_target(target: str | Path, overrides: Sequence[str] = (),
                       error: type[ForgeError] = ForgeError) -> tuple[Any, Path]:
    """(resolved recipe, run directory) for a run directory or a recipe file whose run directory exists."""
    from forge.plan import compile_plan
    from forge.recipe.validate import resolve

    path = Path(target).expanduser()
    if path.is_dir():
        if not (path / "recipe.yaml").is_file():
            raise error(f"{path} is not a run directory: it has no recipe.yaml",
                        "give a run directory written by forge run, or the recipe file")
        return resolve(path / "recipe.yaml", list(overrides)), path
    if path.is_file():
        resolved = resolve(path, list(overrides))
        run_dir = Path(compile_plan(resolved.recipe).run_dir)
        if not run_dir.is_dir():
            raise error(f"the run directory {run_dir} of {path} does not exist", f"train it first: forge run {path}")
        return resolved, run_dir
    raise error(f"{target} is neither a run directory nor a recipe file", "check the path")
