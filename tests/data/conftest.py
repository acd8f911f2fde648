"""Fixtures shared by the data tests."""
from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, demo_bpe_tokenizer) -> Path:
    """A model folder as far as the preview reads it: a config and the tokenizer files (no weights, so
    nothing is built or loaded with torch)."""
    folder = tmp_path_factory.mktemp("model")
    demo_bpe_tokenizer.save_pretrained(folder)
    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": len(demo_bpe_tokenizer),
              "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder
