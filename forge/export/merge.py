"""Merge a run's LoRA adapter into its base model in full precision and write a `from_pretrained` folder.

A base that was trained 4-bit or 8-bit (QLoRA) is loaded as it was trained, dequantized to float32 (transformers'
`dequantize`, which bitsandbytes' quantizers implement), and only then merged: the adapter learned a correction
to the dequantized weights, so adding it to those (rather than to the original 16-bit weights) gives the model
that was evaluated, in full precision. The merge itself is PEFT's `merge_and_unload`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from forge.export.errors import ExportError
from forge.export.source import RunSource

DTYPES = {"f32": "float32", "fp16": "float16", "bf16": "bfloat16"}
MAX_SHARD_SIZE = "2GB"  # shards small enough for any file system or upload; an index file names them


def load_base(source: RunSource) -> tuple[Any, list[str]]:
    """The base model in float32 on the CPU; a quantized training base loaded quantized, then dequantized."""
    import torch

    from forge.model.load import check_quantization, load_model, resolve_dtype

    notes: list[str] = []
    if source.quantization:
        check_quantization(source.quantization)  # bitsandbytes needs CUDA: one line, before any loading
        # loaded as training loaded it (the unquantized norms and embeddings in the run's dtype)
        trained = resolve_dtype(source.plan_model.dtype)
        model = load_model(source.plan_model, source.base_source, source.quantization, trained)
        model = dequantize(model, torch.float32).to(torch.float32)
        bits = f"{source.quantization.bits}-bit"
        notes.append(f"the base was trained {bits}: its weights were dequantized to float32, then the adapter "
                     "was merged into them")
        return model.to("cpu"), notes
    return load_model(source.plan_model, source.base_source, None, "float32"), notes


def dequantize(model: Any, dtype: Any) -> Any:
    """A quantized model's weights as plain `dtype` tensors (its quantizer's dequantize); others unchanged."""
    if getattr(model, "hf_quantizer", None) is None:
        return model
    return model.dequantize(dtype=dtype)


def merge_adapter(base: Any, adapter_dir: Path, tokenizer: Any) -> Any:
    """PEFT's merge of the adapter into `base` (embeddings resized to the tokenizer first, as training did)."""
    from peft import PeftModel

    if len(tokenizer) > base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(len(tokenizer))
    try:
        model = PeftModel.from_pretrained(base, str(adapter_dir))
    except (RuntimeError, ValueError, KeyError) as e:  # PEFT reports a wrong base as a size mismatch
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if "size mismatch" in str(e):
            first = "size mismatch: " + str(e).split("size mismatch for ", 1)[-1].splitlines()[0]
        raise ExportError(f"the adapter in {adapter_dir} does not fit its base model: {first[:300]}",
                          "export it with the base model it was trained on (model.name_or_path in recipe.yaml)",
                          doc="adapter-does-not-fit") from None
    return model.merge_and_unload()


def load_tokenizer(source: RunSource) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.tokenizer_source,
                                              trust_remote_code=source.plan_model.trust_remote_code)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def merged_model(source: RunSource) -> tuple[Any, Any, list[str]]:
    """(merged model in float32, tokenizer, notes) for a run: base + adapter, or the full fine-tune itself."""
    tokenizer = load_tokenizer(source)
    if source.kind == "model":
        from forge.model.load import load_model

        return load_model(source.plan_model, str(source.weights_dir), None, "float32"), tokenizer, []
    base, notes = load_base(source)
    model = merge_adapter(base, source.weights_dir, tokenizer)
    model.eval()
    return model, tokenizer, notes


def write_merged(model: Any, tokenizer: Any, out: Path, dtype: str, max_shard_size: str | int | None = None) -> None:
    """A `from_pretrained` folder: sharded safetensors in `dtype`, config, generation config, tokenizer and its
    chat template."""
    import torch

    model = model.to(getattr(torch, dtype))
    generation = getattr(model, "generation_config", None)
    if generation is not None:  # what a server needs to stop and pad without the training recipe
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(generation, key, None) is None and getattr(tokenizer, key, None) is not None:
                setattr(generation, key, getattr(tokenizer, key))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(out), max_shard_size=max_shard_size or MAX_SHARD_SIZE)
    tokenizer.save_pretrained(str(out))
