"""Prompting and timing a causal LM: the passage is cut so the prompt fits, each request is timed, and the
benchmark utility reports latency and tokens/s after untimed warm-up requests."""
from __future__ import annotations

from pathlib import Path

import pytest

from forge.evaluate.generation import TEMPLATES, Prompter, benchmark_generation


@pytest.fixture(scope="module")
def tiny_lm(tiny_llama_dir: Path):  # noqa: ANN201
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval(), AutoTokenizer.from_pretrained(tiny_llama_dir)


def test_the_passage_is_cut_to_fit(tiny_lm) -> None:  # noqa: ANN001
    _, tokenizer = tiny_lm
    instruction = len(tokenizer(TEMPLATES["genes"].format(passage=""))["input_ids"])
    prompter = Prompter(tokenizer, max_input_tokens=instruction + 30, max_new_tokens=8)
    passage = "BRCA1 regulates DNA repair in breast cells. " * 30
    prompt = prompter.render("genes", passage)
    assert prompt.startswith(TEMPLATES["genes"].split("{passage}")[0]) and prompt.endswith("Genes:")
    kept = prompt.split("Passage: ")[1].split("\n\nGenes:")[0]
    assert 0 < len(kept) < len(passage) and passage.startswith(kept)
    assert len(tokenizer(prompt)["input_ids"]) <= instruction + 30 + 2  # a cut can re-tokenize its edge
    short = prompter.render("answer", "TP53 binds MYC.", question="Which gene binds MYC?")
    assert "Abstract: TP53 binds MYC." in short and "Question: Which gene binds MYC?" in short


def test_a_request_is_timed_and_counted(tiny_lm) -> None:  # noqa: ANN001
    model, tokenizer = tiny_lm
    prompter = Prompter(tokenizer, max_input_tokens=60, max_new_tokens=5)
    generation = prompter.generate(model, "Title: TP53")
    assert generation.prompt_tokens == len(tokenizer("Title: TP53")["input_ids"])
    assert 0 < generation.new_tokens <= 5 and generation.seconds > 0


def test_benchmark_generation(tiny_lm) -> None:  # noqa: ANN001
    model, tokenizer = tiny_lm
    result = benchmark_generation(model, tokenizer, ["Title: BRCA1", "KRAS binds"], max_new_tokens=4, repeats=2)
    assert result["requests"] == 4  # 2 prompts x 2 repeats; the warm-up request is not counted
    assert 0 < result["generated_tokens"] <= 16 and result["tokens_per_second"] > 0
    assert 0 < result["latency_p50_s"] <= result["latency_p99_s"]
    with pytest.raises(ValueError):
        benchmark_generation(model, tokenizer, [])
