"""The error type for problems Forge can explain: one line, a hint, and the exit code the CLI returns.

Recipe problems carry positions (forge.recipe.errors.RecipeError); everything else that a user can fix
(a missing model folder, no CUDA, an empty dataset) raises a ForgeError subclass.
"""
from __future__ import annotations


class ForgeError(Exception):
    """A problem a user can fix; the CLI prints `forge: message; hint` and exits with exit_code."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}; {hint}" if hint else message)


class RunFailed(ForgeError):
    """Training started and failed (NaN loss, a dead rank): the run directory says what was kept."""

    exit_code = 1
