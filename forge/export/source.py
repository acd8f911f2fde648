"""What a run directory holds for export: its recipe, summary, adapter (or full model) folder, base model and
tokenizer, checked before any weights are read."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.export.errors import ExportError
from forge.plan import ModelPlan, QuantizationPlan

ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


@dataclass(frozen=True)
class RunSource:
    """A finished run, ready to export: kind "adapter" (base + PEFT adapter) or "model" (a full fine-tune)."""

    run_dir: Path
    recipe: Any
    yaml_text: str
    summary: dict[str, Any]
    kind: str
    weights_dir: Path
    base_source: str
    tokenizer_source: str
    plan_model: ModelPlan
    quantization: QuantizationPlan | None

    @property
    def name(self) -> str:
        return str(self.recipe.run.name)


def read_run(target: str | Path) -> RunSource:
    """The run in a run directory; ExportError for anything that is not a finished run with weights."""
    from forge.model.load import trained_run_sources
    from forge.plan import compile_plan
    from forge.recipe.validate import resolve

    run_dir = Path(target).expanduser()
    if not run_dir.is_dir():
        raise ExportError(f"{target} is not a directory", "give a run directory written by forge run (runs/NAME)")
    if not (run_dir / "recipe.yaml").is_file() or not (run_dir / "summary.json").is_file():
        raise ExportError(f"{run_dir} is not a run directory: it has no recipe.yaml and summary.json",
                          "give a run directory written by forge run (runs/NAME)")
    try:
        summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ExportError(f"{run_dir / 'summary.json'} is unreadable ({e})", "train the run again") from None
    resolved = resolve(run_dir / "recipe.yaml")
    recipe = resolved.recipe
    kind, weights = _trained_weights(run_dir, summary)
    plan = compile_plan(recipe)
    base, tokenizer = trained_run_sources(recipe.model, kind, weights)
    return RunSource(run_dir=run_dir.resolve(), recipe=recipe, yaml_text=resolved.yaml_text, summary=summary,
                     kind=kind, weights_dir=weights.resolve(), base_source=base, tokenizer_source=tokenizer,
                     plan_model=plan.model, quantization=plan.quantization)


def _trained_weights(run_dir: Path, summary: dict[str, Any]) -> tuple[str, Path]:
    status = summary.get("status", "unknown")
    adapter, full = run_dir / "adapter", run_dir / "model"
    if adapter.is_dir():
        if not (adapter / "adapter_config.json").is_file() or \
                not any((adapter / name).is_file() for name in ADAPTER_WEIGHTS):
            raise ExportError(f"{adapter} is incomplete: it needs adapter_config.json and adapter_model.safetensors",
                              "the adapter was not saved completely; train again with forge run")
        return "adapter", adapter
    if full.is_dir() and (full / "config.json").is_file() and any((full / n).is_file() for n in MODEL_WEIGHTS):
        return "model", full
    raise ExportError(f"{run_dir} has no adapter (adapter/) or trained model (model/); the run's status is {status}",
                      f"finish training first: forge run {run_dir / 'recipe.yaml'}")
