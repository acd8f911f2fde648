"""The error type of the execute side: a problem Forge can explain in a line, with a hint for the fix
(a missing model folder, no network for a hub id, 4-bit without CUDA, an unknown loss).

It is a `forge.errors.ForgeError`, so the CLI prints `forge: message; hint` and exits without a traceback.
"""
from __future__ import annotations

from forge.errors import ForgeError


class ForgeRuntimeError(ForgeError):
    """A run cannot start or go on, for a reason the user can fix."""
