"""The embedded default models: a tiny LLaMA (`forge:tiny-llama`) and a tiny BERT, with random weights and a
byte-level BPE tokenizer trained on the demo corpus, so Forge trains end to end with no download.

Each model is built once into the cache (`$FORGE_CACHE`, default `~/.cache/forge`) as a normal
`from_pretrained` folder, keyed by a hash of its shape, seed and tokenizer corpus. A build happens in a
temporary folder that is renamed into place, so a crash or a concurrent build never leaves half a model.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from forge.file_modes import as_umask_allows
from forge.model.errors import ForgeRuntimeError

TINY_LLAMA = "forge:tiny-llama"
TINY_BERT = "forge:tiny-bert"
BUILD_VERSION = 1  # bump when the build recipe changes, so caches rebuild

LLAMA_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
BERT_SPECIALS = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]",
                 "unk_token": "[UNK]"}
# A plain chat format: a role marker, the content, then eos, which is also what generation stops on.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{{ message['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
DEFAULT_SHAPE = {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128, "vocab_size": 2048}


def cache_dir() -> Path:
    """Where Forge keeps what it builds: `$FORGE_CACHE`, default `~/.cache/forge`."""
    return Path(os.environ.get("FORGE_CACHE") or Path.home() / ".cache" / "forge").expanduser()


def demo_corpus_path() -> Path:
    """The demo corpus shipped in the repository's examples folder."""
    return Path(__file__).resolve().parents[2] / "examples" / "data" / "high_quality_papers_demo.json"


def demo_corpus_texts() -> list[str]:
    """Every piece of text in the demo corpus (titles, abstracts, sections...), for training a tokenizer."""
    path = demo_corpus_path()
    if not path.is_file():
        raise ForgeRuntimeError(f"the demo corpus {path} is missing, and forge:tiny-llama trains its tokenizer on it",
                                "run from a Forge checkout, or point model.name_or_path at a model folder",
                                doc="model-not-found")
    return list(_strings(json.loads(path.read_text(encoding="utf-8"))))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if value.strip():
            yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def tiny_llama(shape: Mapping[str, int] | None = None, texts: Sequence[str] | None = None, *, seed: int = 0,
               root: Path | None = None) -> Path:
    """The folder of forge:tiny-llama with this shape, built on first use."""
    shape = {**DEFAULT_SHAPE, **(shape or {})}
    texts = list(texts) if texts is not None else demo_corpus_texts()
    return _cached("tiny-llama", shape, texts, seed, root, _build_llama)


def tiny_bert(shape: Mapping[str, int] | None = None, texts: Sequence[str] | None = None, *, seed: int = 0,
              root: Path | None = None) -> Path:
    """The folder of a tiny BERT (masked LM head) with this shape, built on first use."""
    shape = {**DEFAULT_SHAPE, **(shape or {})}
    texts = list(texts) if texts is not None else demo_corpus_texts()
    return _cached("tiny-bert", shape, texts, seed, root, _build_bert)


def _cached(kind: str, shape: dict[str, int], texts: list[str], seed: int, root: Path | None,
            build: Any) -> Path:
    digest = hashlib.sha256(json.dumps([kind, BUILD_VERSION, shape, seed], sort_keys=True).encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    folder = (root or cache_dir()) / "models" / f"{kind}-{digest.hexdigest()[:16]}"
    if (folder / "config.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=folder.parent))
    try:
        as_umask_allows(staging, directory=True)
        build(staging, shape, texts, seed)
        try:
            os.rename(staging, folder)
        except OSError:
            if not (folder / "config.json").is_file():  # not a concurrent build that won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def train_bpe(texts: Iterable[str], vocab_size: int, special_tokens: list[str]) -> Any:
    """A byte-level BPE `tokenizers.Tokenizer` trained on texts; deterministic for the same texts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def _build_llama(folder: Path, shape: dict[str, int], texts: list[str], seed: int) -> None:
    import torch
    from tokenizers import processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = list(LLAMA_SPECIALS.values()) + ROLE_TOKENS
    backend = train_bpe(texts, shape["vocab_size"], specials)
    bos = LLAMA_SPECIALS["bos_token"]
    backend.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                      special_tokens=[(bos, backend.token_to_id(bos))]),
    ])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **LLAMA_SPECIALS,
                                        additional_special_tokens=ROLE_TOKENS, model_max_length=4096)
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=shape["hidden_size"], intermediate_size=shape["intermediate_size"],
        num_hidden_layers=shape["num_layers"], num_attention_heads=shape["num_heads"],
        num_key_value_heads=shape["num_heads"], max_position_embeddings=4096, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _build_bert(folder: Path, shape: dict[str, int], texts: list[str], seed: int) -> None:
    import torch
    from tokenizers import processors
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    backend = train_bpe(texts, shape["vocab_size"], list(BERT_SPECIALS.values()))
    cls, sep = BERT_SPECIALS["cls_token"], BERT_SPECIALS["sep_token"]
    backend.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(
            single=f"{cls} $A {sep}", pair=f"{cls} $A {sep} $B:1 {sep}:1",
            special_tokens=[(cls, backend.token_to_id(cls)), (sep, backend.token_to_id(sep))]),
    ])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **BERT_SPECIALS, model_max_length=512)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=shape["hidden_size"], intermediate_size=shape["intermediate_size"],
        num_hidden_layers=shape["num_layers"], num_attention_heads=shape["num_heads"], max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForMaskedLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
