"""The error evaluation raises for problems a user can fix (no run directory, no adapter, no examples for a
task, an unreadable gold file): one line with a hint; `forge eval` prints it and exits 2 without a traceback.
"""
from __future__ import annotations

from forge.errors import ForgeError


class EvaluationError(ForgeError):
    """The evaluation cannot start or a task cannot run, for a reason the user can fix."""
