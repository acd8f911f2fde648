"""Parameter and memory accounting."""
from __future__ import annotations

import mmap

from forge.model.report import ParamCount, count_parameters, human_bytes, human_count, memory_bytes, peak_memory_bytes


def test_count_parameters_splits_trainable_and_total() -> None:
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model[0].requires_grad_(False)
    count = count_parameters(model)
    assert count == ParamCount(trainable=3 * 2 + 2, total=4 * 3 + 3 + 3 * 2 + 2)
    assert round(count.percent, 2) == round(100 * 8 / 23, 2)
    assert count.to_dict()["trainable_percent"] == round(100 * 8 / 23, 4)
    assert "8 trainable of 23 parameters" in count.describe()


def test_human_readable_sizes() -> None:
    assert human_count(1_500_000) == "1.50M" and human_count(7_000_000_000) == "7.00B" and human_count(12) == "12"
    assert human_bytes(512) == "512 B" and human_bytes(3 * 1024**3) == "3.0 GiB" and human_bytes(1536) == "1.5 KiB"


def test_memory_on_the_cpu_is_resident_set_size() -> None:
    import torch

    if torch.cuda.is_available():
        return
    now, peak = memory_bytes(), peak_memory_bytes()
    assert 10 * 1024**2 < now <= peak < 64 * 1024**3
    # 64 MiB of fresh anonymous pages, touched: the allocator cannot hand back pages that are resident already
    # (torch's CPU tensors may reuse freed heap, which left the resident set unchanged in a long test session)
    block = mmap.mmap(-1, 64 * 1024**2)
    block.write(b"x" * (64 * 1024**2))
    assert peak_memory_bytes() >= peak and memory_bytes() > now + 32 * 1024**2
    block.close()
