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


def summarize(paper: ScientificPaper, rng: random.Random, passage: str | None = None) -> tuple[str, str] | None:
    body = body_text(paper) if passage is None else passage
    # One summary per paper: of a chunked paper, the first chunk stands for the body.
    if not paper.abstract.strip() or not body.strip() or (paper.chunk_index or 0) > 0:
        return None
    return SUMMARIZE_PROMPT.format(title=paper.title or "(untitled)", body=body), paper.abstract


def list_genes(paper: ScientificPaper, rng: random.Random, passage: str | None = None) -> tuple[str, str] | None:
    text = template_passage(paper) if passage is None else passage
    genes = [g.symbol for g in genes_in_text(paper.genes, text)]
    if not genes:
        return None
    return LIST_GENES_PROMPT.format(text=text), ", ".join(genes)


def answer_question(paper: ScientificPaper, rng: random.Random,
                    passage: str | None = None) -> tuple[str, str] | None:
    text = template_passage(paper) if passage is None else passage
    genes = genes_in_text(paper.genes, text)
    if not genes:
        return None
    gene = rng.choice(genes)
    sentences = [s for s in _SENTENCE.split(text) if mentions((gene.symbol, *gene.aliases), s)]
    return QUESTION_PROMPT.format(text=text, gene=gene.symbol), " ".join(s.strip() for s in sentences)


# A template makes (prompt, completion) from a paper, reading the passage given in place of the paper's own
# (a shortened one, to fit max_seq_length), or None when it does not fit the paper.
TEMPLATES: dict[str, Callable[..., tuple[str, str] | None]] = {
    "summarize": summarize, "list_genes": list_genes, "answer_question": answer_question,
}
# the passage each template reads, which is what gets shortened when an example is too long
PASSAGES: dict[str, Callable[[ScientificPaper], str]] = {
    "summarize": body_text, "list_genes": template_passage, "answer_question": template_passage,
}


def _row(format: str, prompt: str, completion: str, paper_id: str) -> Example:
    if format == "instruction":  # prompt and completion are joined as they are: the space separates them
        return {"prompt": prompt, "completion": " " + completion, "paper_id": paper_id}
    if format == "chat":
        return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}],
                "paper_id": paper_id}
    raise ValueError(f"unknown example format {format!r} (expected causal_lm, instruction or chat)")


def fit_example(name: str, paper: ScientificPaper, rng_seed: str, format: str, max_length: int,
                count_tokens: Callable[[Example], int]) -> tuple[Example | None, str]:
    """The template's row for a paper within max_length tokens, its answer whole: as it is, or with its passage
    cut to the most whole sentences that fit (the answer made again from what is left, so it never names what
    the model was not shown). Returns (row or None, "kept" | "shortened" | why it was dropped)."""
    template = TEMPLATES[name]
    pair = template(paper, random.Random(rng_seed))
    if pair is None:
        return None, "no answer"
    row = _row(format, *pair, paper.id)
    if count_tokens(row) <= max_length:
        return row, "kept"
    sentences = [s for s in _SENTENCE.split(PASSAGES[name](paper)) if s.strip()]

    def attempt(k: int) -> Example | None:
        cut = template(paper, random.Random(rng_seed), passage=" ".join(s.strip() for s in sentences[:k]))
        return _row(format, *cut, paper.id) if cut is not None and cut[1].strip() else None

    best: Example | None = None
    low, high = 1, len(sentences) - 1  # the most sentences whose example fits (length grows with k)
    while low <= high:
        k = (low + high) // 2
        candidate = attempt(k)
        fits = candidate is not None and count_tokens(candidate) <= max_length
        if fits:
            best, low = candidate, k + 1
        elif candidate is None and k < high:
            low = k + 1  # too few sentences for an answer yet: look further
        else:
            high = k - 1
    if best is not None:
        return best, "shortened"
    return None, "answer alone over max_seq_length" if attempt(1) is not None else "no answer in a passage that fits"


def build_examples(papers: Sequence[ScientificPaper], format: str = "causal_lm",
                   templates: Sequence[str] = ("summarize", "list_genes"),
                   fields: Sequence[str] = ("title", "abstract", "sections"), seed: int = 42,
                   max_length: int | None = None, count_tokens: Callable[[Example], int] | None = None,
                   fitted: dict[str, dict[str, int]] | None = None) -> list[Example]:
    """Rows of the chosen format for every paper (and chunk), in paper order.

    With max_length and count_tokens, an instruction or chat row keeps its whole answer within max_length: its
    passage is shortened or the row dropped (never the answer cut by truncation); `fitted` counts them, as
    {"shortened": {template: n}, "dropped": {"template: reason": n}}."""
    rows: list[Example] = []
    for paper in papers:
        if format == "causal_lm":
            text = causal_text(paper, fields)
            if text.strip():
                rows.append({"text": text, "paper_id": paper.id})
            continue
        if format not in ("instruction", "chat"):
            raise ValueError(f"unknown example format {format!r} (expected causal_lm, instruction or chat)")
        for name in templates:
            rng_seed = f"{seed}:{paper.id}:{paper.chunk_index}:{name}"  # one draw per template, made again alike
            if max_length is None or count_tokens is None:
                pair = TEMPLATES[name](paper, random.Random(rng_seed))
                if pair is not None:
                    rows.append(_row(format, *pair, paper.id))
                continue
            row, outcome = fit_example(name, paper, rng_seed, format, max_length, count_tokens)
            if row is not None:
                rows.append(row)
            if fitted is not None and outcome == "shortened":
                fitted.setdefault("shortened", {})[name] = fitted.get("shortened", {}).get(name, 0) + 1
            elif fitted is not None and outcome not in ("kept", "no answer"):
                key = f"{name}: {outcome}"
                fitted.setdefault("dropped", {})[key] = fitted.get("dropped", {}).get(key, 0) + 1
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
