"""Generative gene recognition measured honestly: the prompt holds the passage the list_genes template trains
on, the gold is the genes that exact passage mentions (after it is cut to fit), answers are read the way
models write them, and the parse rate is reported beside F1. One prompt for both models, through the chat
template for an instruct model."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from forge.data.formats import LIST_GENES_PROMPT, build_examples
from forge.data.papers import ScientificPaper
from forge.evaluate.examples import EvalData, GeneExample, fit_gene_examples, from_papers, gene_gold_note
from forge.evaluate.generation import Prompter
from forge.evaluate.genes import GoldGene
from forge.evaluate.models import EvalModel
from forge.evaluate.run import uses_chat_template
from forge.evaluate.tasks import TaskSettings, gene_task, run_task

PAPER = ScientificPaper.from_record({
    "id": "p1", "title": "KRAS in the pancreas",
    "abstract": "Loss of BRCA1 raised p53 levels in breast tumours. Later, MYC was amplified.",
    "sections": [{"heading": "Results", "text": "KRAS was mutated in every pancreatic sample."}],
    "genes": [{"symbol": "TP53", "aliases": ["p53"]}, "BRCA1", "KRAS", "MYC"]}, "p1")


def test_the_prompt_holds_the_training_passage_and_gold_is_what_it_mentions() -> None:
    [example] = from_papers([PAPER], "test split").gene_recognition
    [row] = build_examples([PAPER], "instruction", templates=("list_genes",))
    # the very passage the list_genes template trains on (the abstract), not title + abstract + sections
    assert row["prompt"] == LIST_GENES_PROMPT.format(text=example.passage)
    # KRAS is annotated on the paper but only its body names it: the prompt never shows it, so it is not gold
    assert [g.symbol for g in example.gold] == ["BRCA1", "TP53", "MYC"] and example.annotated == 4
    assert example.gold[1] == GoldGene("TP53", ("p53",))  # aliases from the data
    assert row["completion"] == " BRCA1, TP53, MYC"  # what training teaches is exactly the gold
    assert gene_gold_note([example]) == ("gene_recognition: 1 of 4 gene annotations of the evaluated passages' "
                                         "papers name a gene the passage in the prompt (the list_genes passage) "
                                         "does not mention, so they are not gold")


def test_cutting_the_passage_to_fit_narrows_the_gold_to_what_is_left() -> None:
    [example] = from_papers([PAPER], "test split").gene_recognition
    cut = "Loss of BRCA1 raised p53 levels in breast tumours."
    [fitted], lost = fit_gene_examples([example], lambda passage: passage[:len(cut)])
    assert fitted.passage == cut and [g.symbol for g in fitted.gold] == ["BRCA1", "TP53"] and lost == 1
    [same], lost = fit_gene_examples([example], lambda passage: passage)
    assert same is example and lost == 0
    # a BC2GM sentence keeps the mentions that end inside the cut
    bc2gm = GeneExample("s1", example.passage, (GoldGene("BRCA1"), GoldGene("MYC")), ((8, 13), (60, 63)), "s1", 2)
    [fitted], lost = fit_gene_examples([bc2gm], lambda passage: passage[:20])
    assert fitted.gold == (GoldGene("BRCA1"),) and fitted.spans == ((8, 13),) and lost == 1


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir: Path):  # noqa: ANN201
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_dir)


def test_the_fitted_passage_is_a_prefix_and_the_prompt_fits(tokenizer) -> None:  # noqa: ANN001
    passage = "BRCA1 regulates DNA repair in breast cells. " * 40
    for chat in (False, True):
        prompter = Prompter(tokenizer, max_input_tokens=120, chat=chat)
        kept = prompter.fit("genes", passage)
        assert 0 < len(kept) < len(passage) and passage.startswith(kept)
        prompt = prompter.render("genes", passage)
        assert kept in prompt
        assert len(tokenizer(prompt, add_special_tokens=not chat)["input_ids"]) <= 120 + 2  # edges can re-merge
    assert Prompter(tokenizer, max_input_tokens=500).fit("genes", "TP53.") == "TP53."


class ScriptedLM:
    """A causal LM stand-in that answers each prompt with a fixed text: the task's logic under test, not a
    model's skill."""

    def __init__(self, tokenizer, answers: dict[str, str]) -> None:  # noqa: ANN001
        import torch

        self.tokenizer, self.answers, self.weight = tokenizer, answers, torch.zeros(1)
        self.prompts: list[str] = []

    def parameters(self):  # noqa: ANN201
        return iter([self.weight])

    def generate(self, input_ids, attention_mask, **kwargs):  # noqa: ANN001, ANN003, ANN201
        import torch

        prompt = self.tokenizer.decode(input_ids[0], skip_special_tokens=False)
        self.prompts.append(prompt)
        answer = next(text for key, text in self.answers.items() if key in prompt)
        new = self.tokenizer(answer, add_special_tokens=False, return_tensors="pt")["input_ids"]
        return torch.cat([input_ids, new], dim=1)


def test_answers_are_read_as_models_write_them_and_the_parse_rate_is_reported(tokenizer) -> None:  # noqa: ANN001
    papers = [ScientificPaper.from_record({"id": f"p{i}", "abstract": abstract, "genes": genes}, f"p{i}")
              for i, (abstract, genes) in enumerate([
                  ("BRCA1 and TP53 repair DNA.", ["BRCA1", "TP53"]),
                  ("KRAS drives growth.", ["KRAS"]),
                  ("MYC is amplified.", ["MYC"]),
                  ("Nothing here names a gene.", ["EGFR"])])]
    data = from_papers(papers, "test split")
    answers = {"BRCA1 and TP53": "BRCA1 (breast cancer 1), TP53 gene\n\nBoth repair DNA.",  # tp 2
               "KRAS drives": "1. KRAS protein\n2. MYC/KRAS",  # tp 1 (KRAS), fp 1 (MYC)
               "MYC is": "The passage describes how a gene is amplified in tumours",  # a sentence: fn 1, unparsed
               "Nothing here": "None."}  # nothing to find, none said
    model = EvalModel("fine-tuned", ScriptedLM(tokenizer, answers), tokenizer, "causal_lm", "scripted")
    result = gene_task(data, model, TaskSettings(window=256, stride=None, max_new_tokens=40))
    # tp 3, fp 1, fn 1: P = R = F1 = 3/4; parse rate 3/4 (the sentence did not parse)
    assert result.details["tp"] == 3 and result.details["fp"] == 1 and result.details["fn"] == 1
    assert result.metrics["gene_f1"] == pytest.approx(0.75) and result.metrics["gene_parse_rate"] == pytest.approx(0.75)
    assert result.details["answers_parsed"] == 3 and result.details["examples_without_gold"] == 1
    assert result.groups == ["p0", "p1", "p2", "p3"] and np.asarray(result.units).shape == (4, 5)
    # the prompt is the list_genes training prompt around the passage
    assert model.model.prompts[0].endswith(LIST_GENES_PROMPT.format(text="BRCA1 and TP53 repair DNA."))


def test_one_prompt_style_for_both_models() -> None:
    instruct, plain = SimpleNamespace(chat_template="{{ messages }}"), SimpleNamespace(chat_template=None)
    assert uses_chat_template("chat", instruct) and uses_chat_template("causal_lm", instruct)
    assert not uses_chat_template("causal_lm", plain) and not uses_chat_template("instruction", instruct)


def test_a_chunked_paper_is_asked_about_its_chunks_as_training_did() -> None:
    chunks = [PAPER.model_copy(update={"sections": (), "full_text": text, "chunk_index": i})
              for i, text in enumerate(["KRAS was mutated in every sample.", "MYC and p53 were not."])]
    data = from_papers([PAPER], "test split", units=chunks)
    rows = build_examples(chunks, "instruction", templates=("list_genes",))
    assert [e.id for e in data.gene_recognition] == ["p1#0", "p1#1"]
    assert [row["prompt"] for row in rows] == [LIST_GENES_PROMPT.format(text=e.passage) for e in data.gene_recognition]
    assert [[g.symbol for g in e.gold] for e in data.gene_recognition] == [["KRAS"], ["MYC", "TP53"]]  # order of first mention
    assert {e.group for e in data.gene_recognition} == {"p1"}  # one paper: one bootstrap unit
    assert [e.id for e in data.perplexity] == ["p1"]  # perplexity still reads the whole paper


@pytest.mark.parametrize(("task", "what"), [("perplexity", "perplexity"), ("summarization", "summarization"),
                                            ("question_answering", "question answering"),
                                            ("general", "lm-evaluation-harness")])
def test_a_task_for_causal_lms_skips_another_model(task: str, what: str) -> None:
    tagger = EvalModel("tuned", model=None, tokenizer=None, kind="token_classification", source="run")
    result = run_task(task, EvalData(source="held-out", documents=1), tagger, TaskSettings(window=64, stride=None))
    assert (result.task, result.model, result.metrics) == (task, "tuned", {})
    assert result.skipped == f"{what} needs a causal LM (model.task is token_classification)"
