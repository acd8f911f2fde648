"""A tokenizer as GGUF metadata, written as llama.cpp's converter (convert_hf_to_gguf.py) writes it, from the
saved fast tokenizer (tokenizer.json):

- byte-level BPE (GPT-2, Llama 3, SmolLM...): llama.cpp's `gpt2` model with the name of its pre-tokenizer, the
  merges, added tokens as CONTROL (special) or USER_DEFINED;
- SentencePiece-style BPE with byte fallback (Llama 2, Mistral): llama.cpp's `llama` model, `<0xNN>` byte tokens
  as BYTE, `<unk>` as UNKNOWN, and scores that order the merges (llama.cpp's SentencePiece tokenizer merges the
  adjacent pair whose result scores highest; a token's score is minus the rank of the first merge that makes it,
  which is what SentencePiece's own scores encode for a BPE model).

Every id up to the model's vocabulary size is written (ids the tokenizer lacks as UNUSED `[PADn]`), with the
special ids, add_bos and the chat template.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from forge.export.errors import ExportError

# the pre-tokenizer regex llama.cpp applies, by its name, for the byte-level pre-tokenizers Forge can recognise
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
BYTE_TOKEN = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")


def read_tokenizer_json(tokenizer_dir: Path) -> dict[str, Any]:
    path = Path(tokenizer_dir) / "tokenizer.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ExportError(f"GGUF export needs the fast tokenizer's tokenizer.json, and {path} is missing",
                          "export --format merged instead") from None
    return data if isinstance(data, dict) else {}


def is_sentencepiece_bpe(data: dict[str, Any]) -> bool:
    """A BPE with byte fallback whose decoder turns ▁ back into spaces: Llama 2's tokenizer.json shape."""
    model = data.get("model") or {}
    return model.get("type") == "BPE" and bool(model.get("byte_fallback")) and \
        (data.get("decoder") or {}).get("type") == "Sequence"


def write_vocabulary(writer: Any, tokenizer: Any, tokenizer_dir: Path, vocab_size: int) -> None:
    """The tokenizer's GGUF metadata (ExportError for a tokenizer llama.cpp's models cannot reproduce)."""
    import gguf

    data = read_tokenizer_json(tokenizer_dir)
    sentencepiece = is_sentencepiece_bpe(data)
    pre = "default" if sentencepiece else pre_tokenizer_name(tokenizer_dir)
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise ExportError(f"the tokenizer has ids up to {max(vocab.values())}, beyond the model's vocabulary of "
                          f"{vocab_size}", "the model's embeddings must cover the tokenizer")
    reverse = {i: token for token, i in vocab.items()}
    added = tokenizer.added_tokens_decoder
    ranks = _merge_ranks(data) if sentencepiece else {}
    unused_score = -float(len(ranks) + 1)  # below every merge: a token no merge makes is never a merge result
    tokens, types, scores = [], [], []
    for i in range(vocab_size):
        token = reverse.get(i)
        score = 0.0
        if token is None:
            token, kind, score = f"[PAD{i}]", gguf.TokenType.UNUSED, -1000.0
        elif sentencepiece and token == tokenizer.unk_token:
            kind = gguf.TokenType.UNKNOWN
        elif i in added:
            kind = gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED
            token = added[i].content
        elif sentencepiece and BYTE_TOKEN.match(token):
            kind = gguf.TokenType.BYTE
        else:
            kind = gguf.TokenType.NORMAL
            if sentencepiece:
                score = -float(ranks[token]) if token in ranks else unused_score
        tokens.append(token)
        types.append(kind)
        scores.append(score)
    writer.add_tokenizer_model("llama" if sentencepiece else "gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    if sentencepiece:
        writer.add_token_scores(scores)
        writer.add_add_space_prefix(_adds_space_prefix(data))
    writer.add_token_types(types)
    quiet = logging.getLogger("gguf.vocab")  # it warns about pair templates, which llama.cpp never uses
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:  # the converter's own reader of special ids, add_bos/add_eos, merges (byte-level only), chat template
        special = gguf.SpecialVocab(tokenizer_dir, load_merges=not sentencepiece, n_vocab=vocab_size)
    finally:
        quiet.setLevel(level)
    special.add_to_gguf(writer, quiet=True)
    if "bos" not in special.add_special_token:
        writer.add_add_bos_token(_adds_bos(tokenizer))
    if special.chat_template is None and getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)


def _merge_ranks(data: dict[str, Any]) -> dict[str, int]:
    """token -> rank of the first merge that makes it."""
    ranks: dict[str, int] = {}
    for rank, merge in enumerate((data.get("model") or {}).get("merges") or []):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        ranks.setdefault(left + right, rank)
    return ranks


def _adds_space_prefix(data: dict[str, Any]) -> bool:
    """Whether the tokenizer puts ▁ before the text (Metaspace's prepend scheme, or a Prepend normalizer)."""
    steps: list[dict[str, Any]] = []
    for part in ("normalizer", "pre_tokenizer"):
        item = data.get(part) or {}
        steps += item.get("normalizers") or item.get("pretokenizers") or [item]
    for step in steps:
        if step.get("type") == "Prepend" and step.get("prepend") == "\u2581":
            return True
        if step.get("type") == "Metaspace" and step.get("prepend_scheme", "always") in ("always", "first"):
            return True
    return False


def _adds_bos(tokenizer: Any) -> bool:
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def pre_tokenizer_name(tokenizer_dir: Path) -> str:
    """llama.cpp's name for a byte-level BPE tokenizer's pre-tokenizer, read from tokenizer.json; ExportError when
    the tokenizer is not one that llama.cpp's `gpt2` model reproduces."""
    path = Path(tokenizer_dir) / "tokenizer.json"
    data = read_tokenizer_json(tokenizer_dir)
    model = data.get("model") or {}
    decoder = (data.get("decoder") or {}).get("type")
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder != "ByteLevel":
        fallback = " with byte fallback" if model.get("byte_fallback") else ""
        raise ExportError(f"GGUF export writes byte-level BPE tokenizers and SentencePiece-style BPE ones; {path} "
                          f"holds a {model.get('type')} tokenizer{fallback} and a {decoder} decoder",
                          "export --format merged instead")
    pre = data.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and (steps[0].get("pattern") or {}).get("Regex") == LLAMA3_SPLIT:
        return "llama-bpe"
    raise ExportError(f"GGUF export does not know llama.cpp's name for the pre-tokenizer in {path} ({kinds})",
                      "export --format merged and convert it with llama.cpp's convert_hf_to_gguf.py")
