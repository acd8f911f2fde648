"""Training examples from papers, in the three shapes TRL's SFTTrainer takes:

- causal_lm:   {"text": ...}                              language modelling on the paper's text
- instruction: {"prompt": ..., "completion": ...}         TRL trains on the completion only by default
- chat:        {"messages": [{"role", "content"}, ...]}   rendered with the tokenizer's chat template

Every row also carries `paper_id`, so a split by paper can be checked. Instruction and chat rows come
from templates (summarize, list_genes, answer_question); a template that does not fit a paper (no
abstract, no genes in the passage) makes no row for it.
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from typing import Any

from forge.data.gene_mentions import genes_in_text, mentions
from forge.data.papers import ScientificPaper, body_text, paper_text

Example = dict[str, Any]
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])|\n+")
# Each prompt ends with a cue ("Genes:") that marks where the answer starts: training, `forge eval` and
# `forge serve` use these same texts, so a fine-tuned model is asked what it was taught to answer.
SUMMARIZE_PROMPT = "Summarize the findings of this genomics paper in a few sentences.\n\nTitle: {title}\n\n{body}\n\nSummary:"
LIST_GENES_PROMPT = ("List the human genes mentioned in this text, as official gene symbols separated by commas."
                     "\n\nPassage: {text}\n\nGenes:")
QUESTION_PROMPT = ("Read the passage and answer the question.\n\nPassage: {text}\n\nQuestion: What does the passage "
                   "report about {gene}?\n\nAnswer:")


def causal_text(paper: ScientificPaper, fields: Sequence[str]) -> str:
    """The text of a causal-LM example: the chosen fields, or a chunk's own text."""
    return paper.full_text if paper.chunk_index is not None and not paper.title and not paper.abstract \
        else paper_text(paper, fields)


def template_passage(paper: ScientificPaper) -> str:
    """What list_genes and answer_question read: a chunk's text, else the abstract (else the body). Gene
    recognition in `forge eval` prompts with this same passage, so it asks what the template taught."""
    if paper.chunk_index is not None:
        return body_text(paper)
    return paper.abstract or body_text(paper)


def summarize(paper: ScientificPaper, rng: random.Random) -> tuple[str, str] | None:
    body = body_text(paper)
    # One summary per paper: of a chunked paper, the first chunk stands for the body.
    if not paper.abstract.strip() or not body.strip() or (paper.chunk_index or 0) > 0:
        return None
    return SUMMARIZE_PROMPT.format(title=paper.title or "(untitled)", body=body), paper.abstract


def list_genes(paper: ScientificPaper, rng: random.Random) -> tuple[str, str] | None:
    text = template_passage(paper)
    genes = [g.symbol for g in genes_in_text(paper.genes, text)]
    if not genes:
        return None
    return LIST_GENES_PROMPT.format(text=text), ", ".join(genes)


def answer_question(paper: ScientificPaper, rng: random.Random) -> tuple[str, str] | None:
    text = template_passage(paper)
    genes = genes_in_text(paper.genes, text)
    if not genes:
        return None
    gene = rng.choice(genes)
    sentences = [s for s in _SENTENCE.split(text) if mentions((gene.symbol, *gene.aliases), s)]
    return QUESTION_PROMPT.format(text=text, gene=gene.symbol), " ".join(s.strip() for s in sentences)


TEMPLATES: dict[str, Callable[[ScientificPaper, random.Random], tuple[str, str] | None]] = {
    "summarize": summarize, "list_genes": list_genes, "answer_question": answer_question,
}


def build_examples(papers: Sequence[ScientificPaper], format: str = "causal_lm",
                   templates: Sequence[str] = ("summarize", "list_genes"),
                   fields: Sequence[str] = ("title", "abstract", "sections"), seed: int = 42) -> list[Example]:
    """Rows of the chosen format for every paper (and chunk), in paper order."""
    rows: list[Example] = []
    for paper in papers:
        if format == "causal_lm":
            text = causal_text(paper, fields)
            if text.strip():
                rows.append({"text": text, "paper_id": paper.id})
            continue
        rng = random.Random(f"{seed}:{paper.id}:{paper.chunk_index}")
        for name in templates:
            pair = TEMPLATES[name](paper, rng)
            if pair is None:
                continue
            prompt, completion = pair
            if format == "instruction":  # prompt and completion are joined as they are: the space separates them
                rows.append({"prompt": prompt, "completion": " " + completion, "paper_id": paper.id})
            elif format == "chat":
                rows.append({"messages": [{"role": "user", "content": prompt},
                                          {"role": "assistant", "content": completion}], "paper_id": paper.id})
            else:
                raise ValueError(f"unknown example format {format!r} (expected causal_lm, instruction or chat)")
    return rows


def columns(format: str) -> "datasets.Features":  # noqa: F821 - datasets is imported here, not at module level
    """The dataset features of a format's rows, so an empty split still has the right columns."""
    from datasets import Features, List, Value

    text = Value("string")
    if format == "causal_lm":
        return Features({"text": text, "paper_id": text})
    if format == "instruction":
        return Features({"prompt": text, "completion": text, "paper_id": text})
    return Features({"messages": List({"role": text, "content": text}), "paper_id": text})


def example_text(row: Example, tokenizer: Any = None) -> str:
    """The whole text a row trains on: what its token length is measured on."""
    if "text" in row:
        return row["text"]
    if "prompt" in row:
        return row["prompt"] + row["completion"]
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(row["messages"], tokenize=False)
    return "\n".join(m["content"] for m in row["messages"])
