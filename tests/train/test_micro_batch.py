"""Automatic micro-batch size."""
from __future__ import annotations

import pytest

from forge.model.errors import ForgeRuntimeError
from forge.train.micro_batch import candidates, choose_micro_batch


def test_candidates_are_powers_of_two_dividing_the_effective_batch() -> None:
    assert candidates(16) == [16, 8, 4, 2, 1]
    assert candidates(12) == [4, 2, 1]
    assert candidates(7) == [1]


def test_cpu_takes_at_most_eight() -> None:
    assert choose_micro_batch(32, cuda=False) == 8
    assert choose_micro_batch(12, cuda=False) == 4
    assert choose_micro_batch(6, cuda=False) == 2
    assert choose_micro_batch(1, cuda=False) == 1


def test_gpu_takes_the_largest_that_fits_and_keeps_the_effective_batch() -> None:
    tried: list[int] = []

    def fits(size: int) -> bool:
        tried.append(size)
        return size <= 4

    micro = choose_micro_batch(64, cuda=True, fits=fits)
    assert micro == 4 and tried == [64, 32, 16, 8, 4] and 64 % micro == 0
    with pytest.raises(ForgeRuntimeError, match="micro-batch of 1"):
        choose_micro_batch(8, cuda=True, fits=lambda size: False)
    with pytest.raises(ValueError):
        choose_micro_batch(0, cuda=False)
