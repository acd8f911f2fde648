"""Write a merged Llama-architecture model as one GGUF file that llama.cpp loads, with the `gguf` package.

It follows llama.cpp's own converter (convert_hf_to_gguf.py, LlamaModel): llama.cpp's tensor names
(`token_embd`, `blk.N.attn_q`...), the rows of q_proj and k_proj permuted from Hugging Face's rotary layout
(first halves, then second halves of each head) back to llama.cpp's interleaved pairs, norms kept in float32,
and the tokenizer written as metadata (forge/export/gguf_vocab.py).
Tensors a block quantization cannot split (a row length not a multiple of its block) fall back to float16, as
llama.cpp's converter does. transformers' GGUF loader undoes the permutation when it reads the file back.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from forge.export.errors import ExportError
from forge.export.gguf_vocab import write_vocabulary

# name -> (GGML tensor type name, llama.cpp file type name)
GGUF_TYPES = {"f32": ("F32", "ALL_F32"), "fp16": ("F16", "MOSTLY_F16"), "bf16": ("BF16", "MOSTLY_BF16"),
              "q8_0": ("Q8_0", "MOSTLY_Q8_0")}
ARCHITECTURES = ("LlamaForCausalLM",)


def check_architecture(config: Any) -> None:
    """Refuse, in one line, a model this writer cannot express in llama.cpp's `llama` architecture."""
    archs = list(getattr(config, "architectures", None) or [])
    if getattr(config, "model_type", None) != "llama" or (archs and archs[0] not in ARCHITECTURES):
        raise ExportError(f"GGUF export supports Llama-architecture causal LMs; this model is "
                          f"{getattr(config, 'model_type', '?')} ({', '.join(archs) or 'no architectures'})",
                          "export --format merged (a from_pretrained folder) instead")
    rope = _rope(config)
    kind = rope.get("rope_type") or rope.get("type") or "default"
    if kind not in ("default", "linear"):
        raise ExportError(f"GGUF export does not write {kind!r} rope scaling (rope_parameters of the base model)",
                          "export --format merged instead")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise ExportError("GGUF export of a Llama model with attention or MLP biases is not supported",
                          "export --format merged instead")


def _rope(config: Any) -> dict[str, Any]:
    return dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})


def permute_rotary(weight: Any, n_head: int) -> Any:
    """Hugging Face's q/k row order (per head: first halves then second halves) to llama.cpp's (pairs)."""
    return (weight.reshape(n_head, 2, weight.shape[0] // n_head // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def write_gguf(model: Any, tokenizer: Any, tokenizer_dir: Path, path: Path, dtype: str, name: str,
               description: str = "") -> dict[str, Any]:
    """Write `model` (merged, float32) as a GGUF file; returns {tensor name: GGML type name}."""
    import gguf

    config = model.config
    check_architecture(config)
    # tensors wait in a temporary file, not in memory, until the header is written
    writer = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA], use_temp_file=True)
    _hyperparameters(writer, config, dtype, name, description)
    write_vocabulary(writer, tokenizer, tokenizer_dir, config.vocab_size)
    types: dict[str, Any] = {}
    for gguf_name, array in _tensors(model):
        data, kind = _encode(array, gguf_name, dtype)
        writer.add_tensor(gguf_name, data, raw_dtype=kind)
        types[gguf_name] = kind.name
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return types


def _hyperparameters(writer: Any, config: Any, dtype: str, name: str, description: str) -> None:
    import gguf

    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer.add_name(name)
    if description:
        writer.add_description(description)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    rope = _rope(config)
    theta = rope.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is not None:
        writer.add_rope_freq_base(float(theta))
    if (rope.get("rope_type") or rope.get("type")) == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(getattr(gguf.LlamaFileType, GGUF_TYPES[dtype][1]))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _tensors(model: Any) -> Iterator[tuple[str, Any]]:
    """(llama.cpp name, float32 numpy array) for every weight, q/k rows permuted as llama.cpp expects."""
    import gguf
    import torch

    config = model.config
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for hf_name, tensor in model.state_dict().items():
        if hf_name.endswith("rotary_emb.inv_freq") or (tied and hf_name == "lm_head.weight"):
            continue  # recomputed by llama.cpp; a tied head is token_embd itself
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ExportError(f"GGUF export cannot map the tensor {hf_name} to a llama.cpp name",
                              "export --format merged instead")
        array = tensor.detach().to(torch.float32).cpu().numpy()
        if hf_name.endswith("q_proj.weight"):
            array = permute_rotary(array, heads)
        elif hf_name.endswith("k_proj.weight"):
            array = permute_rotary(array, kv_heads)
        yield gguf_name, array


def _encode(array: Any, name: str, dtype: str) -> tuple[Any, Any]:
    """The tensor's bytes in the file's type; 1-D tensors stay float32 and unsplittable rows fall back to f16."""
    import gguf
    import numpy as np

    kind = getattr(gguf.GGMLQuantizationType, GGUF_TYPES[dtype][0])
    if array.ndim <= 1:
        kind = gguf.GGMLQuantizationType.F32
    if kind == gguf.GGMLQuantizationType.F32:
        return array.astype(np.float32), kind
    if kind == gguf.GGMLQuantizationType.F16:
        return array.astype(np.float16), kind
    try:
        return gguf.quants.quantize(array, kind), kind
    except gguf.QuantError:
        return array.astype(np.float16), gguf.GGMLQuantizationType.F16
