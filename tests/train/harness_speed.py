"""Helpers for the speed-switch tests: a tiny LLaMA (built from texts, no network) with LoRA adapters whose
B matrices are random (PEFT starts them at zero, which would hide a wrong update), and packed inputs."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

WORDS = ["BRCA1", "TP53", "EGFR", "regulates", "binds", "DNA", "repair", "in", "the", "cells", "of", "tumor"]
SHAPE = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64, "vocab_size": 256}


def random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) + "." for _ in range(n)]


def lora_llama(folder: Path, *, dropout: float = 0.0, dora: bool = False, lora: bool = True,
               attn: str = "sdpa") -> tuple[Any, torch.Tensor]:
    """(model, input ids of 2 x 16): the tiny LLaMA in float32, LoRA r=4 on every linear layer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from forge.model.tiny import tiny_llama

    path = tiny_llama(SHAPE, random_texts(40, seed=0), root=folder / "cache")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=attn)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(4, model.config.vocab_size, (2, 16), generator=generator)
    if not lora:
        return model, ids
    torch.manual_seed(2)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, use_dora=dora,
                                             target_modules="all-linear"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05, generator=generator)
    return model, ids


def packed_inputs(lengths: list[int], vocab: int) -> tuple[list[torch.Tensor], dict[str, Any]]:
    """Random examples and the padding-free row that concatenates them, as TRL's collator makes it."""
    generator = torch.Generator().manual_seed(sum(lengths))
    rows = [torch.randint(4, vocab, (n,), generator=generator) for n in lengths]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    packed = {"input_ids": torch.cat(rows)[None], "position_ids": torch.cat([torch.arange(n) for n in lengths])[None],
              "cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": max(lengths), "max_length_k": max(lengths)}
    return rows, packed
