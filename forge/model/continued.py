"""Continued training: `model.adapter: PATH|RUN_DIR` starts LoRA from an existing adapter instead of a fresh one.

The adapter must have been trained on the same base model with the same shape (rank, alpha, adapted modules,
modules trained in full); anything else is one line naming what differs. The run records where it started
(`Parent`): summary.json's `parent`, MLflow tags `forge.parent.*`, and `forge runs show` prints the lineage.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forge.model.errors import ForgeRuntimeError

if TYPE_CHECKING:
    from forge.plan import LoraPlan

WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class Parent:
    """The adapter a run starts from, and the run that trained it when there is one."""

    adapter: str
    base: str | None
    run_dir: str | None = None
    run_name: str | None = None
    mlflow_run_id: str | None = None
    eval_loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def tags(self) -> dict[str, str]:
        """MLflow tags of the child run."""
        tags = {"forge.parent.adapter": self.adapter}
        for key, value in (("run_dir", self.run_dir), ("run_name", self.run_name),
                           ("run_id", self.mlflow_run_id)):
            if value:
                tags[f"forge.parent.{key}"] = value
        return tags


def find_parent(path: str) -> Parent:
    """The adapter folder `path` names (a PEFT folder, or a run directory holding adapter/)."""
    folder = Path(path).expanduser()
    run_dir = None
    if (folder / "adapter" / "adapter_config.json").is_file():
        run_dir, folder = folder, folder / "adapter"
    if not folder.is_dir():
        raise ForgeRuntimeError(f"model.adapter {path} does not exist",
                                "point it at an adapter folder or a run directory with adapter/",
                                doc="continued-training")
    if not (folder / "adapter_config.json").is_file() or not any((folder / w).is_file() for w in WEIGHTS):
        raise ForgeRuntimeError(f"model.adapter {path} is neither an adapter folder (adapter_config.json and "
                                "adapter_model.safetensors) nor a run directory with adapter/",
                                "point it at the adapter of a finished run", doc="continued-training")
    config = _read(folder / "adapter_config.json")
    summary = _read(run_dir / "summary.json") if run_dir else {}
    ev = summary.get("eval") or {}
    return Parent(adapter=str(folder.resolve()), base=config.get("base_model_name_or_path"),
                  run_dir=str(run_dir.resolve()) if run_dir else None, run_name=summary.get("run_name"),
                  mlflow_run_id=summary.get("mlflow_run_id"),
                  eval_loss=ev.get("loss") if isinstance(ev.get("loss"), (int, float)) else None)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check_shape(parent: Parent, lora: LoraPlan, base_source: str, model: Any) -> None:
    """Refuse an adapter of another base or another shape than the recipe's LoRA section."""
    config = _read(Path(parent.adapter) / "adapter_config.json")
    if parent.base and not _same_base(parent.base, base_source):
        raise ForgeRuntimeError(f"model.adapter {parent.adapter} was trained on {parent.base}, not on this "
                                f"run's base {base_source}", "continue on the base the adapter was trained on "
                                "(model.name_or_path)", doc="continued-training")
    checks = [("lora.r", lora.r, config.get("r")),
              ("lora.alpha", lora.lora_alpha, config.get("lora_alpha")),
              ("lora.use_dora", bool(lora.use_dora), bool(config.get("use_dora"))),
              ("lora.use_rslora", bool(lora.use_rslora), bool(config.get("use_rslora"))),
              ("lora.bias", lora.bias, config.get("bias", "none")),
              ("lora.modules_to_save", sorted(lora.modules_to_save or []),
               sorted(config.get("modules_to_save") or [])),
              ("lora.target_modules", _targets(lora.target_modules, model),
               _short(_as_list(config.get("target_modules"))))]
    for key, ours, theirs in checks:
        if ours != theirs:  # 32 and 32.0 are equal
            raise ForgeRuntimeError(f"{key} is {ours} but the adapter in {parent.adapter} has {theirs}",
                                    f"set {key} to the adapter's value to continue training it",
                                    doc="continued-training")


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return list(value or [])


def _targets(value: Any, model: Any) -> list[str]:
    """The module names the recipe adapts: a list as written, or all-linear as PEFT expands it."""
    if value != "all-linear":
        return _short(_as_list(value))
    import torch

    output = model.get_output_embeddings()
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear) and module is not output and name})


def _short(names: list[str]) -> list[str]:
    """Module names without their path (PEFT saves either form): model.layers.0.mlp.up_proj -> up_proj."""
    return sorted({name.rsplit(".", 1)[-1] for name in names})


def _same_base(a: str, b: str) -> bool:
    if os.path.isdir(a) and os.path.isdir(b):
        return os.path.realpath(a) == os.path.realpath(b)
    return a == b


def start_from_adapter(model: Any, parent: Parent, lora: LoraPlan, base_source: str) -> Any:
    """`model` wrapped with the parent's adapter, its weights trainable (PEFT's PeftModel.from_pretrained)."""
    from peft import PeftModel

    check_shape(parent, lora, base_source, model)
    try:
        wrapped = PeftModel.from_pretrained(model, parent.adapter, is_trainable=True)
    except (RuntimeError, ValueError, KeyError) as e:  # PEFT reports a tensor of another shape as a size mismatch
        text = str(e)
        first = ("size mismatch for " + text.split("size mismatch for ", 1)[1].splitlines()[0]
                 if "size mismatch for " in text else (text.strip().splitlines() or [type(e).__name__])[0])
        raise ForgeRuntimeError(f"model.adapter {parent.adapter} does not fit the base model: {first[:300]}",
                                "continue on the base the adapter was trained on", doc="continued-training") from None
    return wrapped
