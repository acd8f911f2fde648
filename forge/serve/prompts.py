"""The prompts of the serving tasks and the parsing of their answers.

Summaries and gene lists use the very templates Forge trains on (`forge.data.formats`), so a model tuned with
`data.format: instruction` or `chat` and those templates answers them as it learnt; a chat-format run gets
them through the tokenizer's chat template. Methods and findings are asked in the same style.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from forge.data.chunking import cut_to_tokens
from forge.data.formats import LIST_GENES_PROMPT, SUMMARIZE_PROMPT
from forge.data.gene_mentions import parse_gene_list

METHODS_PROMPT = ("List the experimental and computational methods used in this study, separated by commas."
                  "\n\n{text}")
FINDINGS_PROMPT = "State the main findings of this study, one per line.\n\n{text}"
ANALYSIS_FIELDS = ("genes", "methods", "findings")
_LIST_SPLIT = re.compile(r"[,;\n]+")
_LINE_SPLIT = re.compile(r"\n+|(?<=[.!?])\s+(?=[A-Z0-9])")


def task_prompt(task: str, text: str, title: str = "") -> str:
    """The instruction for a task on a paper's text: summary, genes, methods or findings."""
    if task == "summary":
        return SUMMARIZE_PROMPT.format(title=title or "(untitled)", body=text)
    if task == "genes":
        return LIST_GENES_PROMPT.format(text=text)
    if task == "methods":
        return METHODS_PROMPT.format(text=text)
    if task == "findings":
        return FINDINGS_PROMPT.format(text=text)
    raise ValueError(f"unknown task {task!r}")


def chat_text(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """Messages rendered by the tokenizer's chat template, ready for the assistant's turn; a plain
    `role: content` transcript for a tokenizer without a template (a base model)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join(lines + ["assistant:"])


def encode(tokenizer: Any, text: str, *, chat: bool) -> list[int]:
    """Token ids of a prompt. A chat prompt is rendered by the template, which adds its own special tokens;
    a plain prompt gets the tokenizer's (bos), as in training."""
    if chat:
        return list(tokenizer(chat_text(tokenizer, [{"role": "user", "content": text}]),
                              add_special_tokens=False)["input_ids"])
    return list(tokenizer(text)["input_ids"])


def encode_messages(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    return list(tokenizer(chat_text(tokenizer, messages), add_special_tokens=False)["input_ids"])


def truncation_budget(max_input_tokens: int, context_length: int | None, max_tokens: int | None,
                      max_new_tokens: int) -> int:
    """Prompt tokens a truncated paper's prompt may take: the input limit, less what the answer needs of the
    model's context (max_tokens, else the server's max_new_tokens, at most half the context), so that a long
    paper never leaves the answer no room."""
    if not context_length:
        return max_input_tokens
    answer = max_tokens if max_tokens is not None else min(max_new_tokens, context_length // 2)
    return min(max_input_tokens, context_length - answer)


def fit_text(tokenizer: Any, task: str, text: str, title: str, budget: int, *, chat: bool) -> str:
    """The paper text cut (at a token boundary) so that the task's prompt fits in `budget` tokens."""
    overhead = len(encode(tokenizer, task_prompt(task, "", title), chat=chat))
    return cut_to_tokens(text, tokenizer, budget - overhead - 2)  # 2: tokens can merge across the cut


def parse_list(answer: str, *, limit: int = 200) -> list[str]:
    """Items of a comma-, semicolon- or line-separated answer (methods), de-duplicated in order. Gene lists
    are read by `forge.data.gene_mentions`, as evaluation reads them."""
    items: list[str] = []
    for raw in _LIST_SPLIT.split(answer):
        item = raw.strip().strip(".").strip()
        if not item or len(item) > limit or item in items:
            continue
        items.append(item)
    return items


def parse_findings(answer: str) -> list[str]:
    """One finding per line (or sentence), without list markers."""
    found = []
    for raw in _LINE_SPLIT.split(answer):
        item = raw.strip().lstrip("-*0123456789.) ").strip()
        if item and item not in found:
            found.append(item)
    return found


def parse_analysis(field: str, answer: str) -> list[str]:
    if field == "genes":
        return parse_gene_list(answer)
    if field == "methods":
        return parse_list(answer)
    return parse_findings(answer)
