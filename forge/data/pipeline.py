"""The one entry point the trainer calls: `build_datasets(recipe, tokenizer)` reads the recipe's sources,
runs its preprocessing steps, splits by paper and returns the train/validation/test datasets in the
recipe's format, the held-out papers for evaluation, and statistics of every stage.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from forge.data.errors import DataError
from forge.data.formats import build_examples, columns, example_text
from forge.data.papers import ScientificPaper
from forge.data.preprocess import StepStats, resolve_steps, run_steps
from forge.data.readers import files_line, read_sources
from forge.data.split import split_paper_ids
from forge.data.steps import StepContext
from forge.recipe.schema import Recipe

if TYPE_CHECKING:
    import datasets

SPLITS = ("train", "validation", "test")
BAD_LISTED = 1000  # bad records and warnings listed by name in the statistics (all are counted)


@dataclass
class DataStats:
    """Counts and timings of one `build_datasets` call; `to_dict()` is JSON-ready (for logs and MLflow)."""

    sources: list[str] = field(default_factory=list)
    papers_read: int = 0
    bad_records: int = 0
    bad_by_reason: dict[str, int] = field(default_factory=dict)
    bad_examples: list[str] = field(default_factory=list)  # "FILE: where: reason", the first BAD_LISTED
    files_by_format: dict[str, int] = field(default_factory=dict)
    skipped_files: list[list[str]] = field(default_factory=list)  # [file, reason] of files a folder source skipped
    warnings: int = 0  # parts of records dropped (a gene annotation whose offsets miss its text)
    warning_examples: list[str] = field(default_factory=list)
    steps: list[StepStats] = field(default_factory=list)
    papers_after_preprocess: int = 0
    units_after_preprocess: int = 0  # papers, or chunks when a step cut papers up
    papers_by_split: dict[str, int] = field(default_factory=dict)
    examples_by_split: dict[str, int] = field(default_factory=dict)
    token_lengths: dict[str, dict[str, float]] = field(default_factory=dict)
    # instruction/chat examples over max_seq_length: {"shortened": {template: n}, "dropped": {"template: why": n}}
    fitted: dict[str, dict[str, int]] = field(default_factory=dict)
    gene_tokens: dict[str, Any] | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def dropped_by_reason(self) -> dict[str, int]:
        """Every paper lost on the way, keyed `read: reason` or `step: reason`."""
        dropped = {f"read: {reason}": count for reason, count in self.bad_by_reason.items()}
        for step in self.steps:
            for reason, count in step.dropped.items():
                key = f"{step.name}: {reason}"
                dropped[key] = dropped.get(key, 0) + count
        return dropped

    def files_line(self) -> str:
        """`read 40 files (12 jats, 20 pdf, 8 jsonl); skipped 3: notes.docx (unknown format), ...`"""
        return files_line(len(self.sources), self.files_by_format, self.skipped_files)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["dropped_by_reason"] = self.dropped_by_reason()
        return data


@dataclass
class DataBundle:
    """What training and evaluation need: datasets (each row has `paper_id`), held-out papers, stats."""

    train: datasets.Dataset
    validation: datasets.Dataset
    test: datasets.Dataset
    papers_test: list[ScientificPaper]
    stats: DataStats
    papers_validation: list[ScientificPaper] = field(default_factory=list)
    # the held-out units the templates make rows of: chunks when the chunk step cut papers, else the papers
    units_test: list[ScientificPaper] = field(default_factory=list)
    units_validation: list[ScientificPaper] = field(default_factory=list)


def build_datasets(recipe: Recipe, tokenizer: Any = None, progress: bool = True) -> DataBundle:
    """Read, preprocess, split by paper and format the recipe's data. A tokenizer enables the chunk
    step's token budget and token-length statistics; without one, chunk counts words."""
    import datasets

    data, started = recipe.data, time.perf_counter()
    stats = DataStats()
    read = read_sources(data.sources, data.on_error, data.max_papers, progress)
    stats.sources, stats.papers_read = read.files, len(read.papers)
    stats.bad_records, stats.bad_by_reason = len(read.bad), read.dropped_by_reason()
    stats.bad_examples = [str(b) for b in read.bad[:BAD_LISTED]]
    stats.files_by_format = dict(read.formats.most_common())
    stats.skipped_files = [[file, why] for file, why in read.skipped]
    stats.warnings, stats.warning_examples = len(read.warnings), [str(w) for w in read.warnings[:BAD_LISTED]]
    stats.seconds["read"] = time.perf_counter() - started
    if not read.papers:
        # each reason with the first record that had it, so that the message names the file
        first = {b.reason: b for b in reversed(read.bad)}
        reasons = "; ".join(f"{first[r]}" + (f" (and {n - 1} more like it)" if n > 1 else "")
                            for r, n in list(stats.bad_by_reason.items())[:3]) or \
            f"the sources hold no records ({', '.join(read.files) or 'no files'})"
        raise DataError(f"no papers could be read from data.sources: {reasons}",
                        "check the files and data.sources[].format")

    context = StepContext(tokenizer=tokenizer, max_seq_length=recipe.training.max_seq_length,
                          fields=tuple(data.fields), format=data.format, seed=recipe.run.seed)
    mark = time.perf_counter()
    result = run_steps(read.papers, resolve_steps(recipe.preprocess), context, num_proc=data.num_proc,
                       progress=progress)
    stats.steps = result.steps
    stats.papers_after_preprocess, stats.units_after_preprocess = len(result.whole_papers), len(result.papers)
    stats.seconds["preprocess"] = time.perf_counter() - mark

    mark = time.perf_counter()
    ids = split_paper_ids((p.id for p in result.papers), data.split.validation, data.split.test, recipe.run.seed)
    built: dict[str, datasets.Dataset] = {}
    features = columns(data.format)
    for split in SPLITS:
        units = [p for p in result.papers if p.id in ids[split]]
        fit = tokenizer is not None and data.format != "causal_lm"  # answers stay whole: passages are shortened
        rows = build_examples(units, data.format, data.templates, data.fields, recipe.run.seed,
                              max_length=recipe.training.max_seq_length if fit else None,
                              count_tokens=(lambda row: token_count(row, tokenizer)) if fit else None,
                              fitted=stats.fitted)
        stats.papers_by_split[split] = len(ids[split])
        stats.examples_by_split[split] = len(rows)
        built[split] = datasets.Dataset.from_dict({c: [r[c] for r in rows] for c in features}, features=features)
        if tokenizer is not None and rows:
            stats.token_lengths[split] = token_length_summary(rows, tokenizer, recipe.training.max_seq_length)
    if not len(built["train"]):
        raise DataError(f"no {data.format} training examples could be made from {len(ids['train'])} training papers",
                        "for instruction or chat, the papers need abstracts and annotated genes")
    stats.seconds["format"] = time.perf_counter() - mark
    if tokenizer is not None:
        from forge.data.domain_tokens import domain_terms, term_token_report

        stats.gene_tokens = term_token_report(tokenizer, domain_terms(result.whole_papers, limit=500), worst=5).to_dict()
    stats.seconds["total"] = time.perf_counter() - started
    return DataBundle(train=built["train"], validation=built["validation"], test=built["test"],
                      papers_test=[p for p in result.whole_papers if p.id in ids["test"]], stats=stats,
                      papers_validation=[p for p in result.whole_papers if p.id in ids["validation"]],
                      units_test=[p for p in result.papers if p.id in ids["test"]],
                      units_validation=[p for p in result.papers if p.id in ids["validation"]])


def token_count(row: dict[str, Any], tokenizer: Any) -> int:
    """Tokens of a row as it is trained on (special tokens included)."""
    return len(tokenizer(example_text(row, tokenizer), add_special_tokens=True)["input_ids"])


def token_length_summary(rows: list[dict[str, Any]], tokenizer: Any, max_length: int) -> dict[str, float]:
    """Percentiles of the examples' token lengths, and how many exceed `max_length` (they get truncated)."""
    texts = [example_text(row, tokenizer) for row in rows]
    lengths = sorted(len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"])
    return {"p50": percentile(lengths, 50), "p90": percentile(lengths, 90), "p99": percentile(lengths, 99),
            "max": float(lengths[-1]), "mean": round(sum(lengths) / len(lengths), 1),
            "over_max_seq_length": float(sum(n > max_length for n in lengths))}


def percentile(sorted_values: list[int], q: float) -> float:
    """The q-th percentile of sorted values, by linear interpolation."""
    if not sorted_values:
        return 0.0
    position = (len(sorted_values) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return float(round(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low), 1))
