"""The metrics an evaluation report carries: their names (what a gate's `metric` may name), the task that
produces each, and which direction is better.

A leaf module with no heavy imports, so recipe rules can check gate metric names without loading torch.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    """One reported metric: the task that produces it and whether a higher value is better."""

    name: str
    task: str
    higher_is_better: bool
    description: str


_METRICS = (
    MetricInfo("perplexity", "perplexity", False,
               "exp(sum of token negative log-likelihoods / number of predicted tokens) over the whole set"),
    MetricInfo("bits_per_byte", "perplexity", False,
               "sum of token negative log-likelihoods in bits / UTF-8 bytes of the scored text (any tokenizer)"),
    MetricInfo("gene_precision", "gene_recognition", True, "micro-averaged precision of the gene symbols listed"),
    MetricInfo("gene_recall", "gene_recognition", True, "micro-averaged recall of the gold gene symbols"),
    MetricInfo("gene_f1", "gene_recognition", True, "micro-averaged F1 of gene-name recognition"),
    MetricInfo("gene_parse_rate", "gene_recognition", True,
               "share of answers that read as a gene list or an explicit none (generation only)"),
    MetricInfo("rouge1", "summarization", True, "mean ROUGE-1 F-measure of the generated summaries"),
    MetricInfo("rouge2", "summarization", True, "mean ROUGE-2 F-measure of the generated summaries"),
    MetricInfo("rougeL", "summarization", True, "mean ROUGE-L F-measure of the generated summaries"),
    MetricInfo("qa_exact_match", "question_answering", True, "share of answers equal to a reference (normalised)"),
    MetricInfo("qa_f1", "question_answering", True, "mean token F1 between the answer and the best reference"),
    MetricInfo("entity_precision", "entities", True, "a token classifier's entity-level precision (seqeval, strict "
               "IOB2: exact words and type)"),
    MetricInfo("entity_recall", "entities", True, "a token classifier's entity-level recall (seqeval, strict IOB2)"),
    MetricInfo("entity_f1", "entities", True, "a token classifier's entity-level F1 (seqeval, strict IOB2)"),
    MetricInfo("bc2gm_precision", "bc2gm", True, "official BioCreative II gene mention precision (alt_eval.perl)"),
    MetricInfo("bc2gm_recall", "bc2gm", True, "official BioCreative II gene mention recall (alt_eval.perl)"),
    MetricInfo("bc2gm_f1", "bc2gm", True, "official BioCreative II gene mention F1 (alt_eval.perl)"),
    MetricInfo("latency_p50_s", "benchmark", False, "median seconds per generation request"),
    MetricInfo("latency_p99_s", "benchmark", False, "99th percentile seconds per generation request"),
    MetricInfo("tokens_per_second", "benchmark", True, "generated tokens per second of generation time"),
)
METRICS: dict[str, MetricInfo] = {m.name: m for m in _METRICS}
TASK_NAMES = ("perplexity", "gene_recognition", "summarization", "question_answering", "general")


def metric_names(tasks: tuple[str, ...] | list[str] | None = None) -> list[str]:
    """Metric names that the given tasks produce (all when None); benchmark metrics need a generation task.
    The general task's names (general/<task>/<metric>) depend on its harness tasks: see forge.evaluate.general."""
    if tasks is None:
        return list(METRICS)
    generates = any(t not in ("perplexity", "general") for t in tasks)  # general times nothing
    return [m.name for m in _METRICS if m.task in tasks or (m.task == "benchmark" and generates)]
