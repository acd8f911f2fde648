"""What an evaluation task gives back for one model: its metrics, the per-example units the A/B bootstrap
resamples, and a few sample outputs. The tasks (tasks.py, harness.py) make these; the report reads them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forge.evaluate.bootstrap import Statistic
from forge.evaluate.generation import Generation

OUTPUT_CHARS = 300  # of each sample output kept in the report


@dataclass
class TaskResult:
    """One task on one model: metrics, bootstrap units and statistics, details and a few sample outputs."""

    task: str
    model: str
    metrics: dict[str, float] = field(default_factory=dict)
    units: np.ndarray | None = None
    groups: list[str] | None = None  # the unit (paper) of each row of units
    statistics: dict[str, Statistic] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    generations: list[Generation] = field(default_factory=list)
    skipped: str | None = None
    # metrics outside the catalog (the general task's) say their direction here
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    # one result per harness task of the general task, each with its own examples (units)
    parts: dict[str, TaskResult] = field(default_factory=dict)

    def finish(self) -> TaskResult:
        """Fill the metrics from the statistics over all examples."""
        if self.units is not None and len(self.units):
            self.metrics = {name: float(stat(self.units)) for name, stat in self.statistics.items()}
        return self
