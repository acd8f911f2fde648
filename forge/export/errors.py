"""The error type of `forge export`: one line, a hint, exit code 2 (a path that is not a run, a run without an
adapter, a model GGUF cannot hold)."""
from __future__ import annotations

from forge.errors import ForgeError


class ExportError(ForgeError):
    """The run cannot be exported as asked, for a reason the user can fix."""

    doc = "export-errors"
