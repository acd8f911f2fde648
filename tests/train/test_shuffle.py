"""`training.shuffle`: false trains the examples in the data's order, true (the default) in a seeded random one."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def _batches(tmp_path: Path, name: str, texts: list[str], model: Path, monkeypatch: pytest.MonkeyPatch,
             *overrides: str) -> tuple[list[list[list[int]]], list[list[int]]]:
    """The input ids of each micro-batch the run trained on, and the trainer's examples in the data's order."""
    import forge.train.run
    import forge.train.trainer
    from harness import fake_bundle, prepare, write_recipe

    monkeypatch.setattr(forge.train.run, "load_data", fake_bundle)
    seen: list[list[list[int]]] = []
    data: list[Any] = []
    loss = forge.train.trainer._loss_with_pending_metrics

    def spy(trainer: Any, model: Any, inputs: dict[str, Any], num_items_in_batch: Any) -> Any:
        if not data:
            data.append([list(row) for row in trainer.train_dataset["input_ids"]])
        mask = inputs["attention_mask"].bool()
        seen.append([row[keep].tolist() for row, keep in zip(inputs["input_ids"], mask)])
        return loss(trainer, model, inputs, num_items_in_batch)

    monkeypatch.setattr(forge.train.trainer, "_loss_with_pending_metrics", spy)
    recipe = write_recipe(tmp_path / name, texts, model, name=name)
    resolved, plan = prepare(recipe, "training.max_steps=3", "training.micro_batch_size=4",
                             "training.save_steps=100", "training.speed.padding_free=false",
                             "data.split.validation=0.0", *overrides)
    summary = forge.train.run.run_recipe(resolved, plan, progress=False)
    assert summary["status"] == "completed", summary.get("error")
    return seen, data[0]


def test_shuffle_false_trains_the_examples_in_the_datas_order(tmp_path: Path, tiny_llama_dir: Path,
                                                              genomics_examples: list[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ordered, data = _batches(tmp_path, "ordered", genomics_examples, tiny_llama_dir, monkeypatch,
                             "training.shuffle=false")
    assert ordered == [data[0:4], data[4:8], data[8:12]]
    shuffled, same = _batches(tmp_path, "shuffled", genomics_examples, tiny_llama_dir, monkeypatch)
    assert same == data
    drawn = [row for batch in shuffled for row in batch]
    assert len(drawn) == 12 and drawn != data[:12]  # a seeded random draw, not the data's order
    assert all(row in data for row in drawn) and len({tuple(r) for r in drawn}) == 12  # without repeats
