"""The serving decode loop: a dynamic batch generates what transformers' generate() does for each prompt alone,
stops at stop strings, streams pieces that add up to the answer, and samples only where asked to."""
from __future__ import annotations

from pathlib import Path

import pytest

from forge.serve.generate import GenerationJob, generate_stream, sample_next


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval(), AutoTokenizer.from_pretrained(tiny_llama_dir)


def run(model, tokenizer, jobs: list[GenerationJob]) -> tuple[list[str], list[dict]]:
    texts, finals = [""] * len(jobs), [None] * len(jobs)
    for items in generate_stream(model, tokenizer, jobs):
        assert len(items) == len(jobs)
        for i, item in enumerate(items):
            if item is None:
                continue
            assert finals[i] is None, "nothing may follow a job's final item"
            texts[i] += item["text"]
            if item["finish_reason"]:
                finals[i] = item
    return texts, finals


def test_a_batch_generates_what_each_prompt_generates_alone(tiny) -> None:
    model, tokenizer = tiny
    prompts = ["BRCA1 regulates", "Title: TP53 and apoptosis in lung tissue. KRAS binds", "EGFR",
               "MYC activates DNA repair in colon cells. PTEN suppresses"]
    budgets, streams = [12, 20, 5, 16], [False, True, False, True]
    jobs = [GenerationJob(tuple(tokenizer(p)["input_ids"]), n, stream=s) for p, n, s in zip(prompts, budgets, streams)]
    texts, finals = run(model, tokenizer, jobs)
    for prompt, budget, text, final in zip(prompts, budgets, texts, finals):
        ids = tokenizer(prompt, return_tensors="pt")
        reference = model.generate(**ids, max_new_tokens=budget, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert text == tokenizer.decode(reference[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        assert final["prompt_tokens"] == ids["input_ids"].shape[1]
        assert final["finish_reason"] == "length" and final["completion_tokens"] == budget


def test_a_stop_string_ends_the_answer_before_it(tiny) -> None:
    model, tokenizer = tiny
    ids = tuple(tokenizer("BRCA1 regulates DNA repair in")["input_ids"])
    [full], _ = run(model, tokenizer, [GenerationJob(ids, 24)])
    stop = next(full[i:i + 3] for i in range(len(full) // 2, len(full) - 3)
                if "\ufffd" not in full[i:i + 3] and full[i:i + 3].strip())  # a random model writes odd bytes
    for stream in (False, True):
        texts, finals = run(model, tokenizer, [GenerationJob(ids, 24, stop=(stop,), stream=stream),
                                               GenerationJob(ids, 3, stream=not stream)])
        assert texts[0] == full[:full.index(stop)] and finals[0]["finish_reason"] == "stop"
        assert (texts[1] == finals[1]["text"]) if stream else full.startswith(texts[1])


def test_sampling_only_where_the_temperature_asks_for_it() -> None:
    import torch

    logits = torch.tensor([[0.0, 5.0, 1.0], [0.0, 5.0, 1.0], [3.0, 2.9, -9.0]])
    temperature, top_p = torch.tensor([0.0, 1.0, 1.0]), torch.tensor([1.0, 1e-6, 1.0])
    torch.manual_seed(0)
    for _ in range(20):
        greedy, nucleus, free = sample_next(logits, temperature, top_p).tolist()
        assert greedy == 1 and nucleus == 1 and free in (0, 1)


def test_a_merged_adapter_serves_the_same_answers(serve_run_dir: Path) -> None:
    """serving.merge_adapter folds the adapter into the base weights; the answers stay the same."""
    import dataclasses

    from forge.serve.load import load_for_serving, prepare_served, resolve_target

    served = prepare_served(*resolve_target(serve_run_dir))
    assert served.kind == "adapter" and served.context_length == 4096 and not served.merge_adapter
    answers = []
    for merge in (False, True):
        model, tokenizer = load_for_serving(dataclasses.replace(served, merge_adapter=merge), "cpu")
        assert hasattr(model, "peft_config") != merge
        job = GenerationJob(tuple(tokenizer("TP53 binds")["input_ids"]), 8)
        answers.append(run(model, tokenizer, [job])[0][0])
    assert answers[0] == answers[1]


def test_a_seeded_job_samples_the_same_answer_alone_and_in_any_batch(tiny) -> None:
    """A seed is the job's own random stream: its neighbours' draws (seeded or not) do not move it."""
    import torch

    model, tokenizer = tiny
    ids = tuple(tokenizer("BRCA1 regulates")["input_ids"])
    seeded = GenerationJob(ids, 16, temperature=1.5, seed=11)
    other = GenerationJob(tuple(tokenizer("Title: TP53 in lung tissue. KRAS")["input_ids"]), 16, temperature=1.5)
    torch.manual_seed(0)
    alone, _ = run(model, tokenizer, [seeded])
    torch.manual_seed(1)
    batched, _ = run(model, tokenizer, [other, seeded, GenerationJob(ids, 16, temperature=1.5, seed=12)])
    assert batched[1] == alone[0]
    assert batched[2] != alone[0]  # another seed, another answer
