"""Errors of the `forge runs` verbs: one line with a hint; the CLI prints them and exits 2 without a traceback.

Training never raises these: a tracking problem during `forge run` is kept in the summary, not raised.
"""
from __future__ import annotations

from forge.errors import ForgeError


class TrackingError(ForgeError):
    """A tracking store or run that cannot be read, for a reason the user can fix."""


class StoreUnreachable(TrackingError):
    """The tracking server does not answer, or the local store does not exist."""

    doc = "tracking-server-away"


class UnknownRun(TrackingError):
    """No run (or more than one) matches the id the user gave."""


class UnknownExperiment(TrackingError):
    """No experiment has the name the user gave."""
