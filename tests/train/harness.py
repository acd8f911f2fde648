"""Helpers for training tests: a stand-in for the data layer and readers of what a run wrote.

`fake_bundle` replaces forge.data.pipeline.build_datasets in tests that are not about data: the recipe's first
data source is a JSON list of texts; 80% train, 20% validation, with paper ids."""
from __future__ import annotations

import json
from pathlib import Path
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback


RECIPE = """\
run: {{name: {name}, output_dir: {output_dir}, seed: 1}}
data:
  sources: [{{path: {papers}}}]
  split: {{validation: 0.2, test: 0.0}}
preprocess: []
model: {{name_or_path: {model}, dtype: float32}}
lora: {{r: 8, alpha: 16, dropout: 0.05, modules_to_save: [embed_tokens, lm_head]}}
optimizer: {{lr: 3.0e-3, warmup_ratio: 0.1}}
training:
  max_steps: 12
  micro_batch_size: 8
  max_seq_length: 64
  gradient_checkpointing: false
  mixed_precision: "no"
  logging_steps: 1
  save_steps: 4
  save_total_limit: 2
tracking: {{enabled: false}}
evaluation: {{enabled: false}}
"""


def write_recipe(folder: Path, texts: list[str], model: Path | str, name: str = "t", extra: str = "") -> Path:
    """The test recipe: tiny model, 64 train / 16 validation texts, 12 steps, a checkpoint every 4 steps.
    `extra` YAML is appended (later keys of a section must be written as overrides instead)."""
    folder.mkdir(parents=True, exist_ok=True)
    papers = folder / "texts.json"
    if not papers.exists():
        papers.write_text(json.dumps(texts))
    path = folder / f"{name}.yaml"
    path.write_text(RECIPE.format(name=name, output_dir=folder / "runs", papers=papers, model=model) + extra)
    return path


def prepare(path: Path, *overrides: str) -> tuple[Any, Any]:
    """(resolved, plan) through the real loader and compiler."""
    from forge.plan import compile_plan
    from forge.recipe.validate import resolve

    resolved = resolve(path, list(overrides))
    return resolved, compile_plan(resolved.recipe)


class FakeBundle:
    def __init__(self, train: Any, validation: Any, stats: dict[str, Any]) -> None:
        self.train, self.validation, self.test, self.stats = train, validation, None, stats


def fake_bundle(recipe: Any, tokenizer: Any = None, progress: bool = True) -> FakeBundle:
    from datasets import Dataset

    with open(recipe.data.sources[0].path, encoding="utf-8") as f:
        texts = json.load(f)
    ids = [f"paper-{i}" for i in range(len(texts))]
    if recipe.data.format == "causal_lm":
        rows: dict[str, list[Any]] = {"text": texts}
    else:
        prompts = [f"List the genes in: {t[:60]}" for t in texts]
        answers = [", ".join(sorted({w.strip(".,") for w in t.split() if w.isupper() and len(w) > 2}))
                   for t in texts]
        if recipe.data.format == "instruction":
            rows = {"prompt": prompts, "completion": answers}
        else:
            rows = {"messages": [[{"role": "user", "content": p}, {"role": "assistant", "content": a}]
                                 for p, a in zip(prompts, answers)]}
    data = Dataset.from_dict({**rows, "paper_id": ids})
    n_train = int(len(texts) * 0.8)
    validation = data.select(range(n_train, len(texts))) if recipe.data.split.validation > 0 else None
    return FakeBundle(data.select(range(n_train)), validation, {"papers": len(texts), "fake": True})


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def train_losses(run_dir: Path) -> dict[int, float]:
    """step -> logged training loss, from a run's metrics.jsonl."""
    return {r["step"]: r["loss"] for r in read_metrics(run_dir) if r.get("kind") == "train"}


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "summary.json").read_text())


# a fixed input for comparing a trained model with its reloaded adapter
PROBE_IDS = [[0, 12, 40, 7, 99, 23, 5, 61, 150, 3, 77, 201]]


class CaptureLogits(TrainerCallback):
    """Records the trained model's logits on PROBE_IDS when training ends."""

    logits: Any = None

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        import torch

        was_training = model.training
        model.eval()
        with torch.no_grad():
            self.logits = model(input_ids=torch.tensor(PROBE_IDS)).logits.clone()
        model.train(was_training)


@dataclass
class ReferenceRun:
    recipe: Path
    run_dir: Path
    summary: dict[str, Any]
    logits: Any
    output: str


# ------------------------------------------------------------------------------------------ resume checks
# On the CPU a run that silently restarts from step 0 logs the same losses as one that resumes: these checks
# tell them apart by what the resumed process trains and writes.
class StepProbe(TrainerCallback):
    """The optimizer steps this process trained, in order."""

    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps.append(state.global_step)


def metric_lines_up_to(run_dir: Path, step: int) -> list[dict[str, Any]]:
    """The records of metrics.jsonl that a resume from checkpoint `step` must keep as they are (a session's
    closing `end` record is not a step's metric: the resume drops it)."""
    path = Path(run_dir) / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [r for r in map(json.loads, lines) if r["step"] <= step and r.get("kind") != "end"]


def assert_old_metrics_kept(run_dir: Path, kept: list[dict[str, Any]], checkpoint_step: int) -> None:
    """The records logged up to the checkpoint are the file's first records, every value as it was (not logged
    again: a second logging differs in its timings at least); every record after them is of a later step, the
    first training record of step checkpoint + 1."""
    records = read_metrics(run_dir)
    assert records[:len(kept)] == kept, "metrics of the steps before the checkpoint were rewritten"
    new = records[len(kept):]
    assert all(record["step"] > checkpoint_step for record in new), [r["step"] for r in new]
    trained = [record["step"] for record in new if record.get("kind") == "train"]
    assert trained and trained[0] == checkpoint_step + 1, trained


def run_resumed(prepared: tuple[Any, Any], checkpoint_step: int, **kwargs: Any) -> dict[str, Any]:
    """run_recipe on a run directory that holds checkpoint `checkpoint_step`: the resumed process's first step
    must be checkpoint_step + 1, and the metrics logged before it must stay as they were."""
    from forge.train.run import run_recipe

    run_dir = Path(prepared[1].run_dir)
    kept = metric_lines_up_to(run_dir, checkpoint_step)
    probe = StepProbe()
    kwargs.setdefault("progress", False)
    summary = run_recipe(*prepared, callbacks=[probe, *kwargs.pop("callbacks", [])], **kwargs)
    assert probe.steps[:1] == [checkpoint_step + 1], probe.steps[:3]
    assert probe.steps == list(range(checkpoint_step + 1, checkpoint_step + 1 + len(probe.steps)))
    assert_old_metrics_kept(run_dir, kept, checkpoint_step)
    return summary
