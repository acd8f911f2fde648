"""Hardening tests reuse the training tests' harness (tiny recipe, fake data)."""
from __future__ import annotations

import sys
from pathlib import Path

TRAIN_TESTS = str(Path(__file__).resolve().parents[1] / "train")
if TRAIN_TESTS not in sys.path:
    sys.path.append(TRAIN_TESTS)


import pytest  # noqa: E402


@pytest.fixture
def fake_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training reads the recipe's JSON list of texts instead of going through the data layer."""
    import harness

    import forge.train.run

    monkeypatch.setattr(forge.train.run, "load_data", harness.fake_bundle)
