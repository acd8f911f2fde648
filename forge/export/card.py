"""The Hugging Face model card (README.md with YAML metadata) that every exported folder carries, made from the
run: the recipe, the data files' hashes, training figures, the evaluation report and the lineage."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from forge.export.source import RunSource

LIBRARIES = {"adapter": "peft", "merged": "transformers", "gguf": "gguf"}


def evaluation_metrics(run_dir: Path, summary: dict[str, Any]) -> dict[str, float]:
    """The run's results by name: eval/report.json's fine-tuned values and the training's validation loss."""
    out: dict[str, float] = {}
    ev = summary.get("eval") or {}
    if isinstance(ev.get("loss"), (int, float)):
        out["validation_loss"] = float(ev["loss"])
    try:
        report = json.loads((run_dir / "eval" / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return out
    for name, entry in (report.get("metrics") or {}).items():
        if isinstance(entry, dict) and isinstance(entry.get("tuned"), (int, float)):
            out[name] = float(entry["tuned"])
    return out


def _report(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((run_dir / "eval" / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def metadata(source: RunSource, fmt: str) -> dict[str, Any]:
    """The card's YAML header (the keys the Hub reads)."""
    recipe = source.recipe
    tags = ["forge", "text-generation", "scientific-papers"]
    if source.kind == "adapter":
        tags += ["lora"] + (["qlora"] if source.quantization else [])
    if fmt == "gguf":
        tags.append("gguf")
    data = [s.hf_dataset or Path(s.path or "").name for s in recipe.data.sources]
    meta: dict[str, Any] = {"base_model": recipe.model.name_or_path, "library_name": LIBRARIES[fmt],
                            "pipeline_tag": "text-generation", "tags": tags,
                            "datasets": [d for d in data if d],
                            "metrics": sorted(evaluation_metrics(source.run_dir, source.summary))}
    return meta


def model_card(source: RunSource, fmt: str, notes: list[str], files: list[str]) -> str:
    """README.md text: YAML metadata, then what the model is, how it was trained and how it scored."""
    recipe, summary = source.recipe, source.summary
    lines = ["---", yaml.safe_dump(metadata(source, fmt), sort_keys=False).rstrip(), "---", "",
             f"# {source.name}", ""]
    if recipe.run.description:
        lines += [recipe.run.description, ""]
    what = {"adapter": "a LoRA adapter (PEFT) for", "merged": "the merge of a LoRA adapter into",
            "gguf": "a GGUF file (llama.cpp) of the merge of a LoRA adapter into"}[fmt]
    if source.kind == "model":
        what = {"adapter": "a full fine-tune of", "merged": "a full fine-tune of",
                "gguf": "a GGUF file (llama.cpp) of a full fine-tune of"}[fmt]
    lines += [f"This is {what} `{recipe.model.name_or_path}`, trained by Forge on scientific papers.", ""]
    lines += ["## Training", "", *_training(source), ""]
    if notes:
        lines += ["## Precision", "", *[f"- {n}" for n in notes], ""]
    lines += ["## Data", "", "| source | sha256 |", "| --- | --- |"]
    for path, digest in sorted(((summary.get("data") or {}).get("sources_sha256") or {}).items()):
        lines.append(f"| `{path}` | `{digest}` |")
    lines += ["", "## Evaluation", "", *_evaluation(source), "", "## Files", ""]
    lines += [f"- `{f}`" for f in files] + ["", "## How to load", "", *_usage(source, fmt), ""]
    lines += ["## Recipe", "", "The resolved recipe the run was trained from:", "", "```yaml",
              source.yaml_text.rstrip(), "```", ""]
    return "\n".join(lines)


def _training(source: RunSource) -> list[str]:
    recipe, summary = source.recipe, source.summary
    rows = [f"- base model: `{recipe.model.name_or_path}`"]
    if source.kind == "adapter":
        lo = recipe.lora
        rows.append(f"- LoRA r={lo.r}, alpha={lo.alpha:g}, dropout={lo.dropout:g}, target modules "
                    f"{lo.target_modules}" + (f", modules saved {lo.modules_to_save}" if lo.modules_to_save else ""))
    q = recipe.quantization
    rows.append(f"- quantization during training: {q.mode}" + (f" ({q.quant_type})" if q.mode == "4bit" else ""))
    rows.append(f"- steps: {summary.get('steps')}, status {summary.get('status')}")
    ev = summary.get("eval") or {}
    if ev.get("loss") is not None and ev.get("first_loss") is not None:
        rows.append(f"- validation loss: {ev['first_loss']:.4f} at the start, {ev['loss']:.4f} at the end")
    parent = summary.get("parent") or {}
    if parent:
        rows.append(f"- continued from the adapter `{parent.get('adapter')}`"
                    + (f" (run `{parent.get('run_name')}`)" if parent.get("run_name") else ""))
    if summary.get("mlflow_run_id"):
        rows.append(f"- MLflow run: `{summary['mlflow_run_id']}`")
    return rows


def _evaluation(source: RunSource) -> list[str]:
    report = _report(source.run_dir)
    metrics = report.get("metrics") or {}
    if not metrics:
        ev = source.summary.get("eval") or {}
        if ev.get("loss") is not None:
            return [f"Validation loss {ev['loss']:.4f} (perplexity {ev.get('perplexity', float('nan')):.2f}); "
                    "no `forge eval` report."]
        return ["No evaluation was run."]
    rows = ["| metric | fine-tuned | baseline |", "| --- | --- | --- |"]
    for name, entry in metrics.items():
        rows.append(f"| {name} | {_number(entry.get('tuned'))} | {_number(entry.get('baseline'))} |")
    if "gates_passed" in report:
        rows += ["", f"Quality gates: {'passed' if report['gates_passed'] else 'failed'}."]
    return rows


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"


def _usage(source: RunSource, fmt: str) -> list[str]:
    if fmt == "adapter":
        return ["```python", "from peft import AutoPeftModelForCausalLM",
                "model = AutoPeftModelForCausalLM.from_pretrained(\"PATH\")", "```"]
    if fmt == "merged":
        return ["```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                "model = AutoModelForCausalLM.from_pretrained(\"PATH\")",
                "tokenizer = AutoTokenizer.from_pretrained(\"PATH\")", "```", "",
                "vLLM and TGI serve the folder as it is (`vllm serve PATH`)."]
    return ["```", "llama-cli -m PATH/model.gguf -p \"...\"", "```", "",
            "or in transformers: `AutoModelForCausalLM.from_pretrained(\"PATH\", gguf_file=\"model.gguf\")`."]


def write_card(folder: Path, source: RunSource, fmt: str, notes: list[str]) -> Path:
    files = sorted(p.name for p in folder.iterdir() if p.name != "README.md")
    path = folder / "README.md"
    path.write_text(model_card(source, fmt, notes, files), encoding="utf-8")
    return path
