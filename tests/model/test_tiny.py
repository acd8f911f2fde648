"""The embedded tiny models: built once into the cache, deterministic, loadable as plain from_pretrained folders."""
from __future__ import annotations

from pathlib import Path

import pytest

from forge.model.tiny import CHAT_TEMPLATE, TINY_LLAMA, demo_corpus_texts, tiny_llama

SHAPE = {"hidden_size": 16, "num_layers": 1, "num_heads": 2, "intermediate_size": 32, "vocab_size": 300}


def test_tiny_llama_is_a_from_pretrained_folder_with_special_tokens(tiny_llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (tiny_llama_dir / "model.safetensors").is_file()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert model.config.model_type == "llama"
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (32, 2)
    assert tokenizer.pad_token == "<pad>" and tokenizer.eos_token == "</s>" and tokenizer.bos_token == "<s>"
    assert len({tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id}) == 3
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    ids = tokenizer("BRCA1 regulates DNA repair").input_ids
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "BRCA1 regulates DNA repair"
    # the BPE learned the corpus: a frequent gene name is one or two tokens, not six bytes
    assert len(tokenizer(" BRCA1 regulates", add_special_tokens=False).input_ids) <= 3


def test_chat_template_renders_roles_and_generation_prompt(tiny_llama_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Which gene?"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == "<s><|user|>\nWhich gene?</s>\n<|assistant|>\n"
    assert tokenizer.convert_tokens_to_ids("<|assistant|>") != tokenizer.unk_token_id


def test_build_is_cached_and_deterministic(tmp_path: Path, genomics_texts: list[str]) -> None:
    from safetensors.torch import load_file

    first = tiny_llama(SHAPE, genomics_texts, root=tmp_path / "a")
    mtime = (first / "config.json").stat().st_mtime_ns
    assert tiny_llama(SHAPE, genomics_texts, root=tmp_path / "a") == first
    assert (first / "config.json").stat().st_mtime_ns == mtime  # not rebuilt
    again = tiny_llama(SHAPE, genomics_texts, root=tmp_path / "b")
    assert again.name == first.name  # same key for the same shape and corpus
    a, b = load_file(first / "model.safetensors"), load_file(again / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert (first / "tokenizer.json").read_text() == (again / "tokenizer.json").read_text()
    other = tiny_llama({**SHAPE, "hidden_size": 32}, genomics_texts, root=tmp_path / "a")
    assert other != first
    assert not [p for p in (tmp_path / "a" / "models").iterdir() if p.name.startswith(".")]  # no staging left


def test_a_failed_build_leaves_nothing_that_looks_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         genomics_texts: list[str]) -> None:
    import forge.model.tiny as tiny

    def crash(folder: Path, *args: object) -> None:
        (folder / "config.json").write_text("{}")
        raise RuntimeError("killed mid-build")

    monkeypatch.setattr(tiny, "_build_llama", crash)
    with pytest.raises(RuntimeError):
        tiny_llama(SHAPE, genomics_texts, root=tmp_path)
    assert list((tmp_path / "models").iterdir()) == []


def test_forge_cache_env_sets_the_default_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                genomics_texts: list[str]) -> None:
    monkeypatch.setenv("FORGE_CACHE", str(tmp_path / "cache"))
    folder = tiny_llama(SHAPE, genomics_texts[:50])
    assert folder.parent == tmp_path / "cache" / "models"


def test_tiny_bert_has_a_masked_lm_head(tiny_bert_dir: Path) -> None:
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model = AutoModelForMaskedLM.from_pretrained(tiny_bert_dir)
    ids = tokenizer("TP53 binds DNA").input_ids
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.mask_token is not None and model.config.model_type == "bert"


def test_demo_corpus_texts_collects_every_string(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import forge.model.tiny as tiny

    corpus = tmp_path / "papers.json"
    corpus.write_text(json.dumps([{"title": "T", "abstract": "A", "sections": [{"heading": "H", "text": "S"}],
                                   "genes": ["BRCA1"], "year": 2020}]))
    monkeypatch.setattr(tiny, "demo_corpus_path", lambda: corpus)
    assert demo_corpus_texts() == ["T", "A", "H", "S", "BRCA1"]
    monkeypatch.setattr(tiny, "demo_corpus_path", lambda: tmp_path / "missing.json")
    from forge.model.errors import ForgeRuntimeError

    with pytest.raises(ForgeRuntimeError, match="demo corpus"):
        demo_corpus_texts()
    assert TINY_LLAMA == "forge:tiny-llama"
