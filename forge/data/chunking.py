"""Token-budget chunking for the `chunk` step: cut a text into windows of at most `max_tokens` tokens of
the training tokenizer, consecutive windows sharing `overlap` tokens.

Cuts fall on token boundaries (read from the tokenizer's offsets) and, where one is near, at the end of a
sentence. Without a tokenizer, whitespace-separated words stand in for tokens.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from forge.data.errors import DataError
from forge.data.papers import ScientificPaper, body_text, paper_text

_WORD = re.compile(r"\S+")
_SENTENCE_END = ".!?\n"
TEMPLATE_TOKENS = 48  # room for an instruction template's own words around the title and abstract


def token_spans(text: str, tokenizer: Any | None) -> list[tuple[int, int]]:
    """(start, end) character offsets of each token of the text, special tokens excluded."""
    if tokenizer is None:
        return [m.span() for m in _WORD.finditer(text)]
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return [tuple(span) for span in encoded["offset_mapping"]]


def cut_to_tokens(text: str, tokenizer: Any, max_tokens: int) -> str:
    """The longest prefix of the text that is at most `max_tokens` tokens (special tokens not counted), cut at
    a token boundary: the whole text when it fits, "" when no token does. What a prompt shows of a passage
    that would not fit the model's input (`forge eval`'s generation tasks, `forge serve`'s paper tasks)."""
    if max_tokens <= 0:
        return ""
    try:  # a fast tokenizer says where each token ends in the text
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                            verbose=False)["offset_mapping"]
    except NotImplementedError:  # a slow tokenizer: the longest prefix that still fits
        return _longest_prefix_within(text, tokenizer, max_tokens)
    if len(offsets) <= max_tokens:
        return text
    return text[:offsets[max_tokens - 1][1]]


def _longest_prefix_within(text: str, tokenizer: Any, max_tokens: int) -> str:
    def fits(end: int) -> bool:
        return len(tokenizer(text[:end], add_special_tokens=False, verbose=False)["input_ids"]) <= max_tokens

    if fits(len(text)):
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return text[:low]


def count_tokens(texts: list[str], tokenizer: Any | None) -> list[int]:
    """Tokens in each text (special tokens excluded); words when there is no tokenizer."""
    if not texts:
        return []
    if tokenizer is None:
        return [len(t.split()) for t in texts]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def chunk_text(text: str, tokenizer: Any | None, max_tokens: int, overlap: int = 0) -> list[str]:
    """The text cut into windows of at most `max_tokens` tokens, each starting `overlap` tokens before the
    previous one ended. A text within the budget comes back whole."""
    if max_tokens < 1 or not 0 <= overlap < max_tokens:
        raise ValueError(f"need 0 <= overlap < max_tokens, got overlap {overlap} and max_tokens {max_tokens}")
    spans = token_spans(text, tokenizer)
    if len(spans) <= max_tokens:
        return [text]
    chunks: list[str] = []
    start = 0
    while start < len(spans):
        end = min(start + max_tokens, len(spans))
        if end < len(spans):
            end = _sentence_end(text, spans, start, end, max_tokens)
        piece = text[spans[start][0]:spans[end - 1][1]].strip()
        if piece:
            chunks.append(piece)
        if end >= len(spans):
            break
        start = _sentence_start(text, spans, max(end - overlap, start + 1), end)
    return _fit(chunks, tokenizer, max_tokens)


def _sentence_end(text: str, spans: list[tuple[int, int]], start: int, end: int, max_tokens: int) -> int:
    """Move the cut back to just after a sentence end, if one lies in the window's last eighth."""
    for cut in range(end, max(start + 1, end - max(1, max_tokens // 8)), -1):
        if _ends_sentence(text, spans[cut - 1][1]):
            return cut
    return end


def _ends_sentence(text: str, position: int) -> bool:
    """Whether a sentence ends at this offset: '.', '!', '?' or a line break, then a space or the end
    (so the dot of p.Arg97Cys or 1.5 is not an end)."""
    return position > 0 and text[position - 1] in _SENTENCE_END and (position == len(text) or text[position].isspace())


def _sentence_start(text: str, spans: list[tuple[int, int]], start: int, end: int) -> int:
    """Move the next window's start forward to a sentence start inside the overlap, if there is one."""
    for candidate in range(start, end):
        if candidate and _ends_sentence(text, spans[candidate - 1][1]):
            return candidate
    return start


def _fit(chunks: list[str], tokenizer: Any | None, max_tokens: int) -> list[str]:
    """Re-tokenized on its own, a chunk can differ by a token at its start (a word without its leading
    space); trim the rare chunk that then runs over the budget."""
    if tokenizer is None:
        return chunks
    fitted = []
    for chunk, count in zip(chunks, count_tokens(chunks, tokenizer)):
        while count > max_tokens:
            spans = token_spans(chunk, tokenizer)
            # Cut before the first token that does not fit. Not after the last one that does: the byte
            # tokens of one character (° or μ in a byte-level BPE) share its offsets, and that cut could
            # keep them all and never shrink the chunk. Each pass makes the chunk strictly shorter.
            cut = spans[max_tokens][0] if len(spans) > max_tokens else len(chunk) - 1
            chunk = chunk[:min(cut, len(chunk) - 1)].rstrip()
            count = count_tokens([chunk], tokenizer)[0]
        fitted.append(chunk)
    return fitted


def chunk_pieces(paper: ScientificPaper, max_tokens: int, overlap: int, tokenizer: Any, format: str,
                 fields: Sequence[str]) -> ScientificPaper | list[ScientificPaper]:
    """The paper, or its chunks when it runs over the budget. For causal-LM examples (`format`) the whole
    example text (`fields`) is cut and a chunk's text is its `full_text`; for instruction and chat
    examples only the body is cut, and each chunk keeps the title and abstract that templates use."""
    budget = max_tokens - (tokenizer.num_special_tokens_to_add() if hasattr(tokenizer, "num_special_tokens_to_add") else 0)
    if format == "causal_lm":
        text, keep = paper_text(paper, fields), {"title": "", "abstract": "", "keywords": ()}
    else:
        text, keep = body_text(paper), {}
        # Templates put the title and abstract around the body; leave them room, but keep at least half.
        budget = max(budget - sum(count_tokens([paper.title, paper.abstract], tokenizer)) - TEMPLATE_TOKENS,
                     max_tokens // 2)
    if overlap >= budget:
        raise DataError(f"chunk: overlap {overlap} leaves no room in a budget of {budget} tokens",
                        "lower overlap or raise max_tokens")
    pieces = chunk_text(text, tokenizer, budget, overlap)
    if len(pieces) == 1:
        return paper
    return [paper.model_copy(update={**keep, "sections": (), "full_text": piece, "chunk_index": i})
            for i, piece in enumerate(pieces)]
