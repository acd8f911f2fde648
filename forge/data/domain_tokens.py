"""How a tokenizer treats scientific terms: how many tokens gene symbols and other domain terms take
(`term_token_report`), and adding `data.domain_tokens` to a tokenizer (`add_domain_tokens`; the model
side resizes its embeddings to `len(tokenizer)`).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from forge.data.papers import ScientificPaper


@dataclass(frozen=True)
class TermTokenReport:
    """Tokens per term as the term appears inside a sentence (after a space)."""

    terms: int
    mean_tokens: float
    single_token_share: float
    worst: list[tuple[str, int]]
    tokens: dict[str, int]

    def to_dict(self, full: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not full:
            data.pop("tokens")
        return data


def tokens_in_context(tokenizer: Any, term: str) -> int:
    """Tokens the term adds after "the " (a leading space changes how BPE and SentencePiece cut a word)."""
    prefix = len(tokenizer("the", add_special_tokens=False)["input_ids"])
    return len(tokenizer(f"the {term}", add_special_tokens=False)["input_ids"]) - prefix


def term_token_report(tokenizer: Any, terms: Iterable[str], worst: int = 10) -> TermTokenReport:
    """Mean tokens per term, the share that are one token, and the `worst` most fragmented terms."""
    unique = list(dict.fromkeys(t for t in terms if t.strip()))
    counts = {term: tokens_in_context(tokenizer, term) for term in unique}
    if not counts:
        return TermTokenReport(0, 0.0, 0.0, [], {})
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return TermTokenReport(len(counts), round(sum(counts.values()) / len(counts), 3),
                           round(sum(c == 1 for c in counts.values()) / len(counts), 3), ranked[:worst], counts)


def domain_terms(papers: Sequence[ScientificPaper], aliases: bool = True, limit: int | None = None) -> list[str]:
    """The gene symbols (and aliases) annotated in the papers, most frequent first."""
    counted: Counter[str] = Counter()
    for paper in papers:
        for gene in paper.genes:
            counted[gene.symbol] += 1
            if aliases:
                counted.update(a for a in gene.aliases if a)
    return [term for term, _ in counted.most_common(limit)]


def add_domain_tokens(tokenizer: Any, tokens: Sequence[str]) -> int:
    """Add the tokens the vocabulary lacks (as whole, non-special tokens); returns how many were added.
    The caller resizes the model's embeddings to `len(tokenizer)` when this is not zero."""
    vocabulary = tokenizer.get_vocab()
    new = [t for t in dict.fromkeys(tokens) if t.strip() and t not in vocabulary]
    return int(tokenizer.add_tokens(new)) if new else 0
