"""`forge validate`'s check that every local data source exists, reported at the line of the recipe (or the
override) that set its path. Only the path is looked at: no file is opened, no data read."""
from __future__ import annotations

from pathlib import Path

from forge.recipe.errors import RecipeIssue
from forge.recipe.load import display_path
from forge.recipe.validate import Resolved, place


def missing_data_paths(resolved: Resolved) -> list[RecipeIssue]:
    """An issue for each `data.sources[].path` that names nothing on disk (paths are already absolute)."""
    issues = []
    for i, source in enumerate(resolved.recipe.data.sources):
        if source.path and not _exists(Path(source.path)):
            issues.append(place(resolved.positions, display_path(resolved.path), ("data", "sources", i, "path"),
                                f"data source {source.path} does not exist",
                                "paths are relative to the recipe file that sets them"))
    return issues


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for the system, a NUL byte
        return False
