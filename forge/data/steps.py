"""Preprocessing steps: a registry of named, parameterised text transformations applied in recipe order.

This module imports nothing heavy: `forge validate` reads the registry to check step names and arguments.
"""
from __future__ import annotations

from forge.registry import Registry

STEPS: Registry = Registry("preprocessing step")
