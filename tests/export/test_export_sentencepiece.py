"""GGUF export of a model with a SentencePiece-style tokenizer (Llama 2's shape: BPE with byte fallback, ▁ for
spaces, <0xNN> byte tokens): llama.cpp's `llama` tokenizer model with scores that order the merges; read back by
transformers' GGUF loader, it encodes text (non-ASCII included, through the byte tokens) as the original does and
the model gives the merged logits."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from export_support import fake_run, logits, relative_error, resolved_text
from forge.cli import main

pytestmark = pytest.mark.slow
TEXTS = ["BRCA1 regulates DNA repair in breast cells.", "β-catenin binds the 5′ UTR of MYC; p < 0.05",
         "  TP53\tand KRAS\n\nmutations", "<s> is not a token here </s>"]


def sentencepiece_llama(folder: Path, texts: list[str]) -> Path:
    """A tiny random LLaMA with a Llama-2-style tokenizer trained on texts: <unk> <s> </s>, 256 byte tokens,
    then the BPE pieces in the order the trainer made them."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    trainer_tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer_tokenizer.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=400, show_progress=False,
                                                                     special_tokens=["<unk>", "<s>", "</s>"]))
    data = json.loads(trainer_tokenizer.to_str())
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{f"<0x{b:02X}>": 3 + b for b in range(256)}}
    for token, _ in sorted(data["model"]["vocab"].items(), key=lambda item: item[1]):
        vocab.setdefault(token, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges)
    tokenizer.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{% endfor %}"
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def test_a_sentencepiece_tokenizer_exports_as_llama_cpp_llama_model(
        exported_run: Path, genomics_texts: list[str], tmp_path: Path) -> None:
    import gguf
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = sentencepiece_llama(tmp_path / "base", genomics_texts)  # β, ′ and \t are left to the byte tokens
    original = AutoTokenizer.from_pretrained(str(base))
    assert json.loads((base / "tokenizer.json").read_text())["model"]["byte_fallback"]
    torch.manual_seed(1)  # an adapter with non-zero weights on both sides, as after training
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                     init_lora_weights=False)).save_pretrained(str(tmp_path / "adapter"))
    text = resolved_text(exported_run, f"model.name_or_path={base}", "lora.r=4", "lora.alpha=8",
                         "lora.modules_to_save=[]")
    run = fake_run(tmp_path / "run", text, tmp_path / "adapter")
    assert main(["export", str(run), "--format", "gguf", "--dtype", "f32", "--out", str(tmp_path / "gguf")]) == 0

    reader = gguf.GGUFReader(str(tmp_path / "gguf" / "model.gguf"))
    assert reader.fields["tokenizer.ggml.model"].contents() == "llama"
    assert reader.fields["tokenizer.ggml.add_space_prefix"].contents() is True
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    assert types[:3] == [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    assert types.count(gguf.TokenType.BYTE) == 256 and "tokenizer.ggml.merges" not in reader.fields
    scores = reader.fields["tokenizer.ggml.scores"].contents()
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    first = json.loads((base / "tokenizer.json").read_text())["model"]["merges"][0]
    made_first = "".join(first.split(" ") if isinstance(first, str) else first)
    assert scores[tokens.index(made_first)] == max(s for s, t in zip(scores, types) if t == gguf.TokenType.NORMAL)

    loaded = AutoTokenizer.from_pretrained(str(tmp_path / "gguf"), gguf_file="model.gguf")
    for sample in TEXTS:
        assert loaded(sample)["input_ids"] == original(sample)["input_ids"], sample
        assert loaded.decode(loaded(sample)["input_ids"], skip_special_tokens=True) == \
            original.decode(original(sample)["input_ids"], skip_special_tokens=True)
    assert any(types[i] == gguf.TokenType.BYTE for i in original(TEXTS[1])["input_ids"])  # byte fallback used

    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32),
                                          str(tmp_path / "adapter"))
    from_gguf = AutoModelForCausalLM.from_pretrained(str(tmp_path / "gguf"), gguf_file="model.gguf")
    expected: Any = logits(reference)
    assert relative_error(expected, logits(from_gguf)) < 1e-5
