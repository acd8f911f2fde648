"""The error type for problems Forge can explain: one line, a hint, and the exit code the CLI returns.

Recipe problems carry positions (forge.recipe.errors.RecipeError); everything else that a user can fix
(a missing model folder, no CUDA, an empty dataset) raises a ForgeError subclass. Each error may name its
entry in docs/troubleshooting.md (`doc`, an anchor there); the CLI adds the pointer to the printed line.
"""
from __future__ import annotations

TROUBLESHOOTING = "docs/troubleshooting.md"
# errors of packages that set no anchor of their own, by the package that raised them
_PACKAGE_DOCS = {"forge.data": "data-errors", "forge.evaluate": "evaluation-errors", "forge.track": "tracking-errors",
                 "forge.serve": "serve-refuses-to-start", "forge.model": "run-errors"}


class ForgeError(Exception):
    """A problem a user can fix; the CLI prints `forge: message; hint (see docs/troubleshooting.md#doc)` and
    exits with exit_code."""

    exit_code = 2
    doc = ""  # anchor of the error's entry in docs/troubleshooting.md; empty: the raising package's entry

    def __init__(self, message: str, hint: str = "", doc: str = "") -> None:
        self.message = message
        self.hint = hint
        if doc:
            self.doc = doc
        super().__init__(f"{message}; {hint}" if hint else message)


def doc_anchor(error: BaseException) -> str:
    """The troubleshooting anchor of an error: its own, else its package's, else ''."""
    anchor = getattr(error, "doc", "") or ""
    if anchor:
        return anchor
    module = type(error).__module__
    return next((doc for package, doc in _PACKAGE_DOCS.items() if module.startswith(package)), "")


def see_docs(anchor: str) -> str:
    """The pointer appended to a printed error line: ` (see docs/troubleshooting.md#anchor)`, or ''."""
    return f" (see {TROUBLESHOOTING}#{anchor})" if anchor else ""
