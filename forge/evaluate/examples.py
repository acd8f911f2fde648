"""The examples each task evaluates on, built from held-out papers (the recipe's test or validation split, or
`evaluation.data` files) or from a BioCreative gene-mention folder.

- perplexity: each paper's text (the recipe's `data.fields`, as in training);
- gene_recognition: each paper with gene annotations (an unannotated paper is left out: an absent list cannot
  be told from an empty one), prompted with the passage the `list_genes` template trains on; its gold is the
  annotated genes that passage mentions, recomputed by `fit_gene_examples` once the passage is cut to fit the
  prompt; BC2GM sentences are all used, those without a mention included;
- summarization: a reference summary in the paper's metadata (`summary`, `tldr`, `lay_summary`) for its
  abstract, else the abstract as the reference for the body;
- question_answering: metadata `qa` (or `questions`): a list of {question, answer | answers}, asked about
  the abstract.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from forge.data.formats import template_passage
from forge.data.gene_mentions import genes_in_text
from forge.data.papers import ScientificPaper, body_text, paper_text
from forge.evaluate.biocreative import DroppedMention, GeneSentence, find_bc2gm, read_bc2gm
from forge.evaluate.errors import EvaluationError
from forge.evaluate.genes import GoldGene, gold_genes

SUMMARY_KEYS = ("summary", "tldr", "lay_summary")
QA_KEYS = ("qa", "questions")


# Every example names its `group`: the independent unit the bootstrap resamples (a paper; a BC2GM sentence,
# since BC2GM's sentences were drawn one by one from MEDLINE). Examples of one group are never split apart.


@dataclass(frozen=True)
class TextExample:
    id: str
    text: str
    group: str = ""


@dataclass(frozen=True)
class GeneExample:
    id: str
    passage: str
    gold: tuple[GoldGene, ...]
    spans: tuple[tuple[int, int], ...] | None = None  # gold character spans, when the source has them
    group: str = ""
    annotated: int = 0  # genes annotated on the paper (gold is those the passage mentions)


@dataclass(frozen=True)
class SummaryExample:
    id: str
    source: str
    references: tuple[str, ...]
    group: str = ""


@dataclass(frozen=True)
class QAExample:
    id: str
    context: str
    question: str
    answers: tuple[str, ...]
    group: str = ""


@dataclass
class EvalData:
    """Examples per task, and where they came from."""

    source: str
    documents: int
    unit: str = "paper"  # what one bootstrap unit is, for the report
    perplexity: list[TextExample] = field(default_factory=list)
    gene_recognition: list[GeneExample] = field(default_factory=list)
    summarization: list[SummaryExample] = field(default_factory=list)
    question_answering: list[QAExample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {t: len(getattr(self, t)) for t in ("perplexity", "gene_recognition", "summarization",
                                                   "question_answering")}


def from_papers(papers: Sequence[ScientificPaper], source: str, *, fields: Sequence[str] = ("title", "abstract",
                "sections"), max_examples: int = 100,
                units: Sequence[ScientificPaper] | None = None) -> EvalData:
    """Task examples from papers, at most max_examples per task, in paper order. `units` are the pieces the
    training templates made rows of (a chunked paper's chunks); gene recognition asks about those, as
    `list_genes` trained on them. Without them, each paper is its own unit."""
    data = EvalData(source=source, documents=len(papers))
    for unit in units if units is not None else papers:
        passage = template_passage(unit)
        if unit.genes and passage.strip():
            annotated = gold_genes(unit.genes)
            data.gene_recognition.append(GeneExample(_uid(unit), passage, tuple(genes_in_text(annotated, passage)),
                                                     group=unit.id, annotated=len({g.symbol for g in annotated})))
    for paper in papers:
        uid = _uid(paper)
        text = paper_text(paper, fields)
        if text.strip():
            data.perplexity.append(TextExample(uid, text, paper.id))
        summary = _summary(paper, uid)
        if summary:
            data.summarization.append(summary)
        data.question_answering += _questions(paper, uid)
    _cap(data, max_examples)
    return data


def from_sentences(sentences: Sequence[GeneSentence], source: str, max_examples: int = 100) -> EvalData:
    """Gene recognition (and perplexity) examples from BC2GM sentences, with gold character spans."""
    from forge.evaluate.biocreative import nonspace_index

    data = EvalData(source=source, documents=len(sentences), unit="sentence")
    for s in sentences:
        index = nonspace_index(s.text)
        spans = tuple((index[m.start], index[m.end] + 1) for m in s.mentions)
        data.gene_recognition.append(GeneExample(s.id, s.text, tuple(s.gold), spans, s.id, len(s.mentions)))
        data.perplexity.append(TextExample(s.id, s.text, s.id))
    _cap(data, max_examples)
    return data


def fit_gene_examples(examples: Sequence[GeneExample], fit: Callable[[str], str]) -> tuple[list[GeneExample], int]:
    """The examples with each passage cut by `fit` (to a prefix that fits the prompt) and the gold narrowed to
    what the cut passage still holds: annotated genes it mentions, or (BC2GM) mentions that end inside it.
    Also returns how many gold genes the cuts took out. Done once, so both models answer the same examples."""
    out, lost = [], 0
    for example in examples:
        kept = fit(example.passage)
        if kept == example.passage:
            out.append(example)
            continue
        if example.spans is not None:
            inside = [i for i, (_, end) in enumerate(example.spans) if end <= len(kept)]
            gold, spans = tuple(example.gold[i] for i in inside), tuple(example.spans[i] for i in inside)
        else:
            gold, spans = tuple(genes_in_text(example.gold, kept)), None
        lost += len(example.gold) - len(gold)
        out.append(replace(example, passage=kept, gold=gold, spans=spans))
    return out, lost


def gene_gold_note(examples: Sequence[GeneExample]) -> str | None:
    """How many annotated genes are not gold because the passage never mentions them (papers only; a chunked
    paper's genes count once per chunk, as each chunk is asked about them)."""
    papers = [e for e in examples if e.spans is None]
    annotated = sum(e.annotated for e in papers)
    absent = annotated - sum(len(e.gold) for e in papers)
    if not papers or absent <= 0:
        return None
    return (f"gene_recognition: {absent} of {annotated} gene annotations of the evaluated passages' papers name a "
            "gene the passage in the prompt (the list_genes passage) does not mention, so they are not gold")


def load_eval_data(recipe: Any, tokenizer: Any, progress: bool = False) -> EvalData:
    """The examples the recipe's evaluation section asks for: `evaluation.data` files, else its split."""
    ev = recipe.evaluation
    fields = tuple(recipe.data.fields)
    if ev.data:
        path = Path(ev.data)
        if not path.exists():
            raise EvaluationError(f"evaluation data {path} does not exist", "check evaluation.data")
        folder = path.parent if path.is_file() and path.name.endswith(".eval") else path
        bc2gm = find_bc2gm(folder) if folder.is_dir() else None
        if bc2gm:
            dropped: list[DroppedMention] = []
            data = from_sentences(read_bc2gm(*bc2gm, dropped=dropped), f"BC2GM {folder}", ev.max_examples)
            if dropped:
                data.notes.append(f"BC2GM: dropped {len(dropped)} mention{'s' if len(dropped) > 1 else ''} whose "
                                  "offsets do not match their sentence: " + "; ".join(map(str, dropped[:20]))
                                  + (f"; and {len(dropped) - 20} more" if len(dropped) > 20 else ""))
            return data
        from forge.data.readers import read_sources
        from forge.recipe.schema import DataSource

        result = read_sources([DataSource(path=str(path))], on_error=recipe.data.on_error, progress=progress)
        data = from_papers(result.papers, str(path), fields=fields, max_examples=ev.max_examples)
        if result.bad:
            data.notes.append(f"{len(result.bad)} records of {path} could not be read and were skipped")
        return data
    try:
        from forge.data.pipeline import build_datasets
    except ImportError:
        raise EvaluationError(f"this Forge has no data pipeline to hold out the {ev.split} split",
                              "set evaluation.data to files of held-out papers") from None
    bundle = build_datasets(recipe, tokenizer=tokenizer, progress=progress)
    papers = getattr(bundle, f"papers_{ev.split}", None)
    if papers is None:
        raise EvaluationError(f"the data pipeline keeps no held-out papers for the {ev.split} split",
                              "set evaluation.data to files of held-out papers")
    units = getattr(bundle, f"units_{ev.split}", None) or None
    return from_papers(list(papers), f"{ev.split} split", fields=fields, max_examples=ev.max_examples, units=units)


def _uid(paper: ScientificPaper) -> str:
    return paper.id if paper.chunk_index is None else f"{paper.id}#{paper.chunk_index}"


def _summary(paper: ScientificPaper, uid: str) -> SummaryExample | None:
    source = paper.abstract.strip() or body_text(paper).strip()
    for key in SUMMARY_KEYS:
        refs = _strings(paper.metadata.get(key))
        if refs and source:
            return SummaryExample(uid, source, tuple(refs), paper.id)
    body = body_text(paper).strip()
    if paper.abstract.strip() and body:
        return SummaryExample(uid, body, (paper.abstract.strip(),), paper.id)
    return None


def _questions(paper: ScientificPaper, uid: str) -> list[QAExample]:
    items = next((paper.metadata[k] for k in QA_KEYS if isinstance(paper.metadata.get(k), list)), [])
    context = paper.abstract.strip() or body_text(paper).strip()
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            continue
        answers = _strings(item.get("answers", item.get("answer")))
        if answers and context:
            out.append(QAExample(f"{uid}/q{i}", context, item["question"].strip(), tuple(answers), paper.id))
    return out


def _strings(value: Any) -> list[str]:
    """A string or a list of strings, stripped, empty ones dropped."""
    if isinstance(value, str):
        return [value.strip()] if value.strip() else []
    if isinstance(value, list):
        return [v.strip() for v in value if isinstance(v, str) and v.strip()]
    return []


def _cap(data: EvalData, max_examples: int) -> None:
    for task, count in data.counts().items():
        if count > max_examples:
            setattr(data, task, getattr(data, task)[:max_examples])
            data.notes.append(f"{task}: evaluated the first {max_examples} of {count} examples "
                              "(evaluation.max_examples)")
