"""The examples each task evaluates on, built from held-out papers (the recipe's test or validation split, or
`evaluation.data` files) or from a BioCreative gene-mention folder.

- perplexity: each paper's text (the recipe's `data.fields`, as in training);
- gene_recognition: each paper with gold genes (an unannotated paper is left out: an absent list cannot be
  told from an empty one); BC2GM sentences are all used, those without a mention included;
- summarization: a reference summary in the paper's metadata (`summary`, `tldr`, `lay_summary`) for its
  abstract, else the abstract as the reference for the body;
- question_answering: metadata `qa` (or `questions`): a list of {question, answer | answers}, asked about
  the abstract.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forge.data.papers import ScientificPaper, body_text, paper_text
from forge.evaluate.biocreative import GeneSentence, find_bc2gm, read_bc2gm
from forge.evaluate.errors import EvaluationError
from forge.evaluate.genes import GoldGene, gold_genes

SUMMARY_KEYS = ("summary", "tldr", "lay_summary")
QA_KEYS = ("qa", "questions")


@dataclass(frozen=True)
class TextExample:
    id: str
    text: str


@dataclass(frozen=True)
class GeneExample:
    id: str
    passage: str
    gold: tuple[GoldGene, ...]
    spans: tuple[tuple[int, int], ...] | None = None  # gold character spans, when the source has them


@dataclass(frozen=True)
class SummaryExample:
    id: str
    source: str
    references: tuple[str, ...]


@dataclass(frozen=True)
class QAExample:
    id: str
    context: str
    question: str
    answers: tuple[str, ...]


@dataclass
class EvalData:
    """Examples per task, and where they came from."""

    source: str
    documents: int
    perplexity: list[TextExample] = field(default_factory=list)
    gene_recognition: list[GeneExample] = field(default_factory=list)
    summarization: list[SummaryExample] = field(default_factory=list)
    question_answering: list[QAExample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {t: len(getattr(self, t)) for t in ("perplexity", "gene_recognition", "summarization",
                                                   "question_answering")}


def from_papers(papers: Sequence[ScientificPaper], source: str, *, fields: Sequence[str] = ("title", "abstract",
                "sections"), max_examples: int = 100) -> EvalData:
    """Task examples from papers, at most max_examples per task, in paper order."""
    data = EvalData(source=source, documents=len(papers))
    for paper in papers:
        uid = paper.id if paper.chunk_index is None else f"{paper.id}#{paper.chunk_index}"
        text = paper_text(paper, fields)
        if text.strip():
            data.perplexity.append(TextExample(uid, text))
        if paper.genes and text.strip():
            data.gene_recognition.append(GeneExample(uid, text, tuple(gold_genes(paper.genes))))
        summary = _summary(paper, uid)
        if summary:
            data.summarization.append(summary)
        data.question_answering += _questions(paper, uid)
    _cap(data, max_examples)
    return data


def from_sentences(sentences: Sequence[GeneSentence], source: str, max_examples: int = 100) -> EvalData:
    """Gene recognition (and perplexity) examples from BC2GM sentences, with gold character spans."""
    from forge.evaluate.biocreative import nonspace_index

    data = EvalData(source=source, documents=len(sentences))
    for s in sentences:
        index = nonspace_index(s.text)
        spans = tuple((index[m.start], index[m.end] + 1) for m in s.mentions)
        data.gene_recognition.append(GeneExample(s.id, s.text, tuple(s.gold), spans))
        data.perplexity.append(TextExample(s.id, s.text))
    _cap(data, max_examples)
    return data


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
            return from_sentences(read_bc2gm(*bc2gm), f"BC2GM {folder}", ev.max_examples)
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
    return from_papers(list(papers), f"{ev.split} split", fields=fields, max_examples=ev.max_examples)


def _summary(paper: ScientificPaper, uid: str) -> SummaryExample | None:
    source = paper.abstract.strip() or body_text(paper).strip()
    for key in SUMMARY_KEYS:
        refs = _strings(paper.metadata.get(key))
        if refs and source:
            return SummaryExample(uid, source, tuple(refs))
    body = body_text(paper).strip()
    if paper.abstract.strip() and body:
        return SummaryExample(uid, body, (paper.abstract.strip(),))
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
            out.append(QAExample(f"{uid}/q{i}", context, item["question"].strip(), tuple(answers)))
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
