"""`forge export RUN_DIR --format adapter|merged|gguf`: one function per format (a registry, so a format is a
name, a function and a line of doc), each writing into a staging folder that is renamed into place once whole,
with the model card; `--register NAME` then makes it a version in the MLflow Model Registry."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from forge.export.errors import ExportError
from forge.export.source import RunSource, read_run
from forge.registry import Registry

FORMATS: Registry[Callable[..., "Exported"]] = Registry("export format")
DTYPE_CHOICES = ("f32", "fp16", "bf16", "q8_0")
TORCH_NAMES = {"float32": "f32", "float16": "fp16", "bfloat16": "bf16"}
SKIPPED_FILES = ("training_args.bin",)


@dataclass
class Exported:
    """What a format wrote into the folder, and what the card must say about it."""

    dtype: str | None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@FORMATS.register("adapter")
def export_adapter(source: RunSource, folder: Path, dtype: str | None) -> Exported:
    """The PEFT adapter folder as training saved it (AutoPeftModelForCausalLM loads it)."""
    if source.kind != "adapter":
        raise ExportError(f"{source.run_dir} is a full fine-tune (model/), not a LoRA run: it has no adapter",
                          "export --format merged instead")
    if dtype is not None:
        raise ExportError("--dtype does not apply to --format adapter (the adapter is copied as trained)",
                          "leave --dtype out, or export --format merged")
    for path in source.weights_dir.iterdir():
        # training_args.bin is the trainer's pickle: nothing a loader needs, and unsafe to load from a stranger
        if path.is_file() and not path.name.startswith(".") and path.name not in SKIPPED_FILES:
            shutil.copy2(path, folder / path.name)
    _point_at_base(folder / "adapter_config.json", source)
    return Exported(dtype=None)


@FORMATS.register("merged")
def export_merged(source: RunSource, folder: Path, dtype: str | None) -> Exported:
    """A from_pretrained folder: adapter merged into the base in float32, sharded safetensors, tokenizer."""
    from forge.export.merge import DTYPES, merged_model, write_merged

    if dtype == "q8_0":
        raise ExportError("--dtype q8_0 is a GGUF quantization", "use --format gguf, or f32/fp16/bf16 for merged")
    chosen = dtype or saved_dtype(source)
    model, tokenizer, notes = merged_model(source)
    write_merged(model, tokenizer, folder, DTYPES[chosen])
    if source.quantization:
        notes.append("the merged weights are the dequantized 4-bit base plus the adapter: they reproduce the "
                     "model that was trained and evaluated, not the original 16-bit base plus the adapter")
    return Exported(dtype=chosen, notes=notes)


@FORMATS.register("gguf")
def export_gguf(source: RunSource, folder: Path, dtype: str | None) -> Exported:
    """One GGUF file (model.gguf) for llama.cpp: Llama architecture, f32/fp16/bf16 or q8_0."""
    import transformers

    from forge.export.gguf_llama import check_architecture, write_gguf
    from forge.export.merge import load_tokenizer, merged_model

    base = source.base_source if source.kind == "adapter" else str(source.weights_dir)
    config = transformers.AutoConfig.from_pretrained(
        base, trust_remote_code=source.plan_model.trust_remote_code)
    check_architecture(config)  # before any weights are read
    chosen = dtype or ("bf16" if saved_dtype(source) == "bf16" else "fp16")  # llama.cpp's converter's default
    model, tokenizer, notes = merged_model(source)
    with tempfile.TemporaryDirectory(prefix="forge-tokenizer-") as tmp:
        load_tokenizer(source).save_pretrained(tmp)  # the saved files carry the merges and special tokens
        types = write_gguf(model, tokenizer, Path(tmp), folder / "model.gguf", chosen, source.name,
                           source.recipe.run.description)
    if source.quantization:
        notes.append("the GGUF weights are the dequantized 4-bit base plus the adapter")
    return Exported(dtype=chosen, notes=notes, details={"tensor_types": types})


def saved_dtype(source: RunSource) -> str:
    """The dtype the base model (or the full fine-tune) was saved in, from its config.json; f32 if unknown."""
    import transformers

    folder = source.base_source if source.kind == "adapter" else str(source.weights_dir)
    config = transformers.AutoConfig.from_pretrained(
        folder, trust_remote_code=source.plan_model.trust_remote_code)
    name = str(getattr(config, "dtype", None) or getattr(config, "torch_dtype", None) or "float32")
    return TORCH_NAMES.get(name.removeprefix("torch."), "f32")


def _point_at_base(config_path: Path, source: RunSource) -> None:
    """The exported adapter names the base as the recipe did (a hub id stays a hub id)."""
    import json

    data = json.loads(config_path.read_text(encoding="utf-8"))
    if not source.recipe.model.name_or_path.startswith("forge:"):
        data["base_model_name_or_path"] = source.recipe.model.name_or_path
    config_path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def export_run(target: str | Path, fmt: str, dtype: str | None = None,
               out: str | Path | None = None) -> tuple[Path, RunSource, Exported]:
    """Export a run; returns (folder, source, what was written). The folder appears whole or not at all."""
    from forge.export.card import write_card

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}", f"use one of {', '.join(FORMATS.names())}")
    if dtype is not None and dtype not in DTYPE_CHOICES:
        raise ExportError(f"unknown --dtype {dtype!r}", f"use one of {', '.join(DTYPE_CHOICES)}")
    source = read_run(target)
    folder = Path(out).expanduser() if out else source.run_dir / "export" / fmt
    ours = out is None
    if folder.exists() and not folder.is_dir():
        raise ExportError(f"--out {folder} is a file", "give a folder that does not exist yet")
    if folder.is_dir() and any(folder.iterdir()) and not ours:
        raise ExportError(f"--out {folder} exists and is not empty", "give a new folder (nothing is overwritten)")
    folder.parent.mkdir(parents=True, exist_ok=True)
    _quiet_machine()
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        from forge.train.progress import quiet_library_bars

        with quiet_library_bars():
            written = FORMATS.get(fmt).function(source, staging, dtype)
        write_card(staging, source, fmt, written.notes)
        if folder.exists():
            old = folder.with_name(f".{folder.name}-old-{os.getpid()}")
            os.rename(folder, old)
            os.rename(staging, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder, source, written


def _quiet_machine() -> None:
    import torch

    if not torch.cuda.is_available():
        # DeepSpeed (imported by transformers when installed) otherwise prints its accelerator probe
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


def export_command(target: str, fmt: str, dtype: str | None = None, out: str | None = None,
                   register: str | None = None) -> int:
    """`forge export`: 0 once the folder is written (and registered when asked)."""
    if register:  # a run without an MLflow run is refused before anything is written
        from forge.track.registry import run_store

        early = read_run(target)
        run_store(early.run_dir, early.recipe, early.summary)
    folder, source, written = export_run(target, fmt, dtype, out)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"forge: exported {source.run_dir.name} as {fmt}{' ' + written.dtype if written.dtype else ''} to "
          f"{folder} ({size / 2**20:.1f} MiB)")
    for note in written.notes:
        print(f"  note: {note}")
    if register:
        from forge.export.card import evaluation_metrics
        from forge.track.registry import register_folder

        version = register_folder(source.run_dir, source.recipe, source.summary, register, folder, f"export/{fmt}",
                                  evaluation_metrics(source.run_dir, source.summary), {"forge.export.format": fmt})
        print(f"forge: registered {folder} as {version['name']} version {version['version']} in {version['uri']}")
    return 0
