"""What the GPU tests train on: the shape of their small LLaMA, genomics-flavoured random texts, and a stand-in
for forge.data's bundle that serves a JSON list of texts without preprocessing."""
from __future__ import annotations

import json
import random
from pathlib import Path

SHAPE = {"hidden_size": 1024, "num_layers": 4, "num_heads": 16, "intermediate_size": 2816, "vocab_size": 4096}
WORDS = ["BRCA1", "TP53", "EGFR", "KRAS", "regulates", "binds", "DNA", "repair", "apoptosis", "tumor", "growth",
         "in", "breast", "lung", "cells", "the", "of", "and", "expression", "mutation", "pathway", "signaling"]


def texts(n: int, seed: int, longest: int) -> list[str]:
    """n texts of 40 to `longest` words, the same for the same seed."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(40, longest))) + "." for _ in range(n)]


class Bundle:
    """The texts of a JSON file as forge.data's bundle: the last `validation` of them held out, no test split."""

    def __init__(self, path: str, validation: int = 0) -> None:
        from datasets import Dataset

        data = json.loads(Path(path).read_text())
        ds = Dataset.from_dict({"text": data, "paper_id": [str(i) for i in range(len(data))]})
        cut = len(data) - validation
        self.train = ds.select(range(cut)) if validation else ds
        self.validation = ds.select(range(cut, len(data))) if validation else None
        self.test = None
        self.stats = {"papers": len(data)}
