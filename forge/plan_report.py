"""What `forge plan` prints: the resolved recipe with the source of every value, and the compiled plan,
as aligned text for people or as one JSON object for programs.
"""
from __future__ import annotations

from typing import Any

from forge.plan import Plan
from forge.recipe.validate import Resolved


def plan_json(resolved: Resolved, plan: Plan) -> dict[str, Any]:
    data = plan.to_dict()
    return {
        "recipe": resolved.recipe.model_dump(mode="json", exclude={"extends"}),
        "sources": resolved.sources(),
        "chain": resolved.chain,
        "run_dir": data["run_dir"],
        "model": data["model"],
        "trainer": data["trainer"],
        "lora": data["lora"],
        "quantization": data["quantization"],
        "launch": data["launch"],
        "serving": data["serving"],
        "estimate": data["estimate"],
        "notes": data["notes"],
    }


def _value(value: Any) -> str:
    text = repr(value) if isinstance(value, str) and (not value or " " in value) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _table(title: str, rows: dict[str, Any] | None, skip_none: bool = True) -> list[str]:
    lines = [f"\n{title}"]
    if not rows:
        return lines + ["  (none)"]
    items = [(k, v) for k, v in rows.items() if not (skip_none and v is None)]
    width = max(len(k) for k, _ in items)
    return lines + [f"  {k:<{width}}  {_value(v)}" for k, v in items]


def format_plan(resolved: Resolved, plan: Plan) -> str:
    sources = resolved.sources()
    lines = [f"Recipe {resolved.chain[-1]}"]
    if len(resolved.chain) > 1:
        lines.append(f"  extends: {' -> '.join(resolved.chain[:-1])}")
    if resolved.overrides:
        lines.append(f"  overrides: {' '.join(resolved.overrides)}")
    lines.append("\nResolved recipe (value, then where it was set)")
    width = max(len(k) for k in sources)
    flat = _flatten(resolved.recipe.model_dump(mode="json", exclude={"extends"}))
    for key, source in sources.items():
        lines.append(f"  {key:<{width}}  {_value(flat.get(key, '')):<40}  {source}")
    sections = plan.to_dict()  # the tables show the plan as plan.json holds it
    lines += _table(f"Model ({plan.model.name_or_path})", sections["model"])
    lines += _table("Trainer (TRL SFTConfig)", plan.trainer)
    lines += _table("LoRA (PEFT LoraConfig)", sections["lora"])
    lines += _table("Quantization (bitsandbytes)", sections["quantization"])
    launch = {k: v for k, v in sections["launch"].items() if k not in ("deepspeed", "env")}
    lines += _table("Launch", launch)
    if plan.launch.deepspeed:
        lines += _table("DeepSpeed config", _flatten(plan.launch.deepspeed))
    lines += _table("Serving", plan.serving)
    estimate = {k: v for k, v in plan.estimate.items() if k != "memory_plan"}
    lines += _table("Memory estimate (one device)", estimate)
    if plan.estimate.get("memory_plan"):  # whole lines: each names a setting and its predicted peak and speed
        lines.append("\nMemory plan (training.memory)")
        lines += [f"  {k:<7}  {v}" for k, v in plan.estimate["memory_plan"].items()]
    if plan.notes:
        lines.append("\nNotes")
        lines += [f"  - {note}" for note in plan.notes]
    lines.append(f"\nRun directory: {plan.run_dir}")
    return "\n".join(lines)


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(_flatten(v, f"{prefix}{i}."))
        return out
    return {prefix.rstrip("."): value}
