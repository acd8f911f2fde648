"""Seeded train/validation/test split by paper: every example of a paper (all its chunks and templates)
lands on the same side, so no test paper is seen in training."""
from __future__ import annotations

import random
from collections.abc import Iterable

from forge.data.errors import DataError


def split_paper_ids(paper_ids: Iterable[str], validation: float, test: float, seed: int) -> dict[str, set[str]]:
    """{"train", "validation", "test"} -> paper ids. The ids are sorted then shuffled with the seed, so the
    split depends on the set of papers and the seed only. A non-zero fraction holds out at least one paper."""
    ids = sorted(set(paper_ids))
    random.Random(seed).shuffle(ids)
    n_test = _count(len(ids), test)
    n_validation = _count(len(ids), validation)
    if n_test + n_validation >= len(ids):
        raise DataError(f"{len(ids)} papers are too few to hold out {n_validation} for validation and {n_test} "
                        "for test and still train", "add papers or lower data.split fractions")
    return {"test": set(ids[:n_test]), "validation": set(ids[n_test:n_test + n_validation]),
            "train": set(ids[n_test + n_validation:])}


def _count(total: int, fraction: float) -> int:
    return max(1, round(total * fraction)) if fraction > 0 else 0
