"""The evaluation tasks a recipe names in `evaluation.tasks`: a registry of functions that run one model over
one task's examples and return its metrics with the per-example units the A/B bootstrap resamples.

Each task's metrics are computed by the same `Statistic` functions the bootstrap uses, so the reported
value and its confidence interval can never disagree on how the metric is defined; each row of units names
its group (the paper it comes from), which the bootstrap resamples whole.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from forge.data.gene_mentions import parse_gene_answer
from forge.evaluate import genes, perplexity, text_metrics
from forge.evaluate.bootstrap import mean_of
from forge.evaluate.examples import EvalData
from forge.evaluate.harness import HarnessTasks, harness_parts, run_harness
from forge.evaluate.generation import Prompter
from forge.evaluate.models import EvalModel
from forge.evaluate.results import OUTPUT_CHARS, TaskResult
from forge.registry import Registry

TASKS: Registry = Registry("evaluation task")


@dataclass(frozen=True)
class TaskSettings:
    """What the tasks need from the recipe's evaluation section."""

    window: int
    stride: int | None
    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    chat: bool = False
    progress: bool = False
    samples: int = 3  # example outputs kept in the report per task and model
    general: HarnessTasks | None = None  # the general task's harness tasks, loaded once

    def prompter(self, tokenizer: Any) -> Prompter:
        return Prompter(tokenizer, max_input_tokens=max(16, self.window - self.max_new_tokens),
                        max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                        chat=self.chat)


TaskFunction = Callable[[EvalData, EvalModel, TaskSettings], TaskResult]


def run_task(name: str, data: EvalData, model: EvalModel, settings: TaskSettings) -> TaskResult:
    """Run a registered task on one model (with its adapter switched on for the duration)."""
    with model.use():
        return TASKS.get(name).function(data, model, settings)


def _bar(items: list[Any], task: str, model: EvalModel, settings: TaskSettings) -> Any:
    from forge.console import progress_bar

    return progress_bar(items, desc=f"{task} ({model.label})", unit=" ex", disable=not settings.progress, leave=False)


def _unless_causal_lm(task: str, what: str, model: EvalModel) -> TaskResult | None:
    """The task's result, skipped, for a model that is not a causal LM; None for one that is."""
    if model.kind == "causal_lm":
        return None
    return TaskResult(task, model.label, skipped=f"{what} needs a causal LM (model.task is {model.kind})")


@TASKS.register("perplexity")
def perplexity_task(data: EvalData, model: EvalModel, settings: TaskSettings) -> TaskResult:
    """Token-weighted perplexity of held-out text, with a sliding window over long documents."""
    if (skipped := _unless_causal_lm("perplexity", "perplexity", model)) is not None:
        return skipped
    result = TaskResult("perplexity", model.label)
    if not data.perplexity:
        result.skipped = "no held-out text"
        return result
    texts = [e.text for e in data.perplexity]
    scores = perplexity.score_texts(model.model, model.tokenizer, texts, settings.window, settings.stride,
                                    progress=settings.progress, desc=f"perplexity ({model.label})")
    result.units = perplexity.units(scores)
    result.groups = [e.group or e.id for e in data.perplexity]
    result.statistics = {"perplexity": perplexity.perplexity_statistic,
                         "bits_per_byte": perplexity.bits_per_byte_statistic}
    tokens = sum(s.tokens for s in scores)
    result.details = {"documents": len(scores), "tokens": tokens, "bytes": sum(s.bytes for s in scores),
                      "nll_sum": sum(s.nll for s in scores),
                      "mean_nll": sum(s.nll for s in scores) / tokens if tokens else None,
                      "window": settings.window, "stride": perplexity.effective_stride(settings.window, settings.stride)}
    return result.finish()


@TASKS.register("gene_recognition")
def gene_task(data: EvalData, model: EvalModel, settings: TaskSettings) -> TaskResult:
    """Precision, recall and F1 of the gene names the model lists for a passage, against gold genes."""
    result = TaskResult("gene_recognition", model.label)
    if model.kind not in ("causal_lm", "token_classification"):
        result.skipped = f"gene recognition needs a causal LM or a BIO token classifier (model.task is {model.kind})"
        return result
    if not data.gene_recognition:
        result.skipped = "no examples with gold gene annotations"
        return result
    counts, spans, parsed = [], [], []
    generative = model.kind != "token_classification"
    prompter = settings.prompter(model.tokenizer)
    for example in _bar(data.gene_recognition, "genes", model, settings):
        if not generative:
            from forge.evaluate.token_labels import mentions, predict_spans, span_counts

            predicted_spans = predict_spans(model.model, model.tokenizer, example.passage)
            names, output = mentions(example.passage, predicted_spans), ""
            if example.spans is not None:
                spans.append(span_counts([s[:2] for s in predicted_spans], example.spans))
        else:
            # the passage was cut to fit once for both models (examples.fit_gene_examples); gold is what it holds
            generation = prompter.generate(model.model, prompter.render("genes", example.passage))
            result.generations.append(generation)
            output = generation.text
            answer = parse_gene_answer(output)
            names = list(answer.names)
            parsed.append(answer.parsed)
        count = genes.score_example(names, example.gold)
        counts.append(count)
        if len(result.samples) < settings.samples:
            result.samples.append({"id": example.id, "gold": [g.symbol for g in example.gold], "predicted": names,
                                   "output": output[:OUTPUT_CHARS], "tp": count.tp, "fp": count.fp, "fn": count.fn})
    # rows: tp, fp, fn, parsed (0/1), 1 (an answer): precision, recall and F1 read the first three
    result.units = np.column_stack([genes.units(counts), np.array(parsed if generative else [1] * len(counts),
                                                                  dtype=np.float64), np.ones(len(counts))])
    result.groups = [e.group or e.id for e in data.gene_recognition]
    result.statistics = {"gene_precision": genes.precision_statistic, "gene_recall": genes.recall_statistic,
                         "gene_f1": genes.f1_statistic}
    if generative:
        result.statistics["gene_parse_rate"] = mean_of(3, count_column=4)
    total = genes.micro(counts)
    result.details = {"examples": len(counts), "tp": total.tp, "fp": total.fp, "fn": total.fn,
                      "route": "generation" if generative else "token classification"}
    if generative:
        result.details.update(answers_parsed=int(sum(parsed)),
                              examples_without_gold=sum(1 for e in data.gene_recognition if not e.gold))
    if spans:
        strict = genes.micro(spans)
        result.details.update(span_precision=strict.precision, span_recall=strict.recall, span_f1=strict.f1)
    return result.finish()


@TASKS.register("summarization")
def summary_task(data: EvalData, model: EvalModel, settings: TaskSettings) -> TaskResult:
    """ROUGE-1/2/L F-measure of generated summaries against reference summaries (or abstracts)."""
    if (skipped := _unless_causal_lm("summarization", "summarization", model)) is not None:
        return skipped
    result = TaskResult("summarization", model.label)
    if not data.summarization:
        result.skipped = "no examples with a reference summary (or an abstract and a body)"
        return result
    prompter = settings.prompter(model.tokenizer)
    rows = []
    for example in _bar(data.summarization, "summarization", model, settings):
        generation = prompter.generate(model.model, prompter.render("summary", example.source))
        result.generations.append(generation)
        scores = text_metrics.rouge(generation.text, example.references)
        rows.append([scores[name] for name in text_metrics.ROUGE_TYPES])
        if len(result.samples) < settings.samples:
            result.samples.append({"id": example.id, "reference": example.references[0][:OUTPUT_CHARS],
                                   "output": generation.text[:OUTPUT_CHARS], **scores})
    result.units = np.column_stack([np.array(rows, dtype=np.float64).reshape(-1, 3), np.ones(len(rows))])
    result.groups = [e.group or e.id for e in data.summarization]
    result.statistics = {name: mean_of(i, count_column=3) for i, name in enumerate(text_metrics.ROUGE_TYPES)}
    result.details = {"examples": len(rows)}
    return result.finish()


@TASKS.register("question_answering")
def qa_task(data: EvalData, model: EvalModel, settings: TaskSettings) -> TaskResult:
    """Exact match and token F1 (SQuAD) of short answers to questions about an abstract."""
    if (skipped := _unless_causal_lm("question_answering", "question answering", model)) is not None:
        return skipped
    result = TaskResult("question_answering", model.label)
    if not data.question_answering:
        result.skipped = "no questions with reference answers (metadata qa)"
        return result
    prompter = settings.prompter(model.tokenizer)
    rows = []
    for example in _bar(data.question_answering, "qa", model, settings):
        prompt = prompter.render("answer", example.context, question=example.question)
        generation = prompter.generate(model.model, prompt)
        result.generations.append(generation)
        answer = next((line.strip() for line in generation.text.splitlines() if line.strip()), "")
        em, f1 = text_metrics.exact_match(answer, example.answers), text_metrics.token_f1(answer, example.answers)
        rows.append([em, f1])
        if len(result.samples) < settings.samples:
            result.samples.append({"id": example.id, "question": example.question, "answers": list(example.answers),
                                   "output": answer[:OUTPUT_CHARS], "exact_match": em, "f1": f1})
    result.units = np.column_stack([np.array(rows, dtype=np.float64).reshape(-1, 2), np.ones(len(rows))])
    result.groups = [e.group or e.id for e in data.question_answering]
    result.statistics = {"qa_exact_match": mean_of(0, count_column=2), "qa_f1": mean_of(1, count_column=2)}
    result.details = {"examples": len(rows)}
    return result.finish()


@TASKS.register("general")
def general_task(data: EvalData, model: EvalModel, settings: TaskSettings) -> TaskResult:
    """lm-evaluation-harness tasks (general ability) through the harness's Hugging Face wrapper."""
    if (skipped := _unless_causal_lm("general", "lm-evaluation-harness", model)) is not None:
        return skipped
    result = TaskResult("general", model.label)
    tasks: HarnessTasks | None = settings.general
    if tasks is None:
        result.skipped = "no harness tasks were loaded (evaluation.general.tasks)"
        return result
    out = run_harness(tasks, model, settings.progress)
    result.parts = harness_parts(out, model.label, tasks.sources, settings.samples)
    result.details = {"harness": f"lm-evaluation-harness {tasks.version}".strip(),
                      "listed": tasks.listed, "scored": len(result.parts), "limit": tasks.settings.limit,
                      "num_fewshot": tasks.settings.num_fewshot if tasks.settings.num_fewshot is not None
                      else "task default", "offline": tasks.settings.offline}
    return result
