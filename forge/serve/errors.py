"""The errors of `forge serve` before it listens: a run directory it cannot serve, a setting this machine cannot
honour. One line each with a hint; the CLI prints `forge: message; hint` and exits 2 (1 for a failed start).
"""
from __future__ import annotations

from forge.errors import ForgeError


class ServeError(ForgeError):
    """The run, the recipe's serving section or this machine does not allow serving as asked."""


class ServeFailed(ForgeError):
    """The server started and could not go on (a model worker failed to load)."""

    exit_code = 1
