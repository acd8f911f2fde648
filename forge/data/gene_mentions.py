"""Gene mentions in text: the one notion of "a gene named in this text" that training data, evaluation and
serving share.

- `genes_in_text`: which annotated genes (symbol or alias) a passage mentions, in order of first mention: what
  the `list_genes` template answers and what gene recognition takes as gold for the passage a prompt holds;
- `parse_gene_answer`: the gene names in a model's answer, whichever way models write a list (commas, new
  lines, bullets, numbering, "and", slashes, a `Genes:` label, parentheticals, a trailing "gene"/"protein",
  "none"), and whether the answer read as a list at all (the parse rate of an evaluation);
- `normalize_symbol`: the key two spellings of one gene share (TNF-α = TNF-alpha = tnf alpha, IL-6 = IL6).

Pure functions, no heavy imports: the data layer sits below evaluation and serving.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from forge.data.vocabulary import GREEK_NAMES

MAX_NAME_WORDS = 4  # a longer item is a sentence, not a gene name
MAX_NAME_CHARS = 40

_GREEK = {char.lower(): name.lower() for char, name in GREEK_NAMES.items()}
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_SPLIT = re.compile(r"[,;|]+|\s+(?:and|or|&)\s+")
_BULLET = re.compile(r"^\s*(?:[-*•·>]+|\(?\d{1,3}[.)]|\(?[a-z][.)](?=\s))\s*")
_LABEL = re.compile(
    r"^\s*(?:here\s+are\s+)?(?:the\s+)?(?:human\s+)?(?:official\s+)?"
    r"(?:genes?|gene\s+names|gene\s+symbols|symbols|answer|output)"
    r"(?:\s+(?:mentioned|listed|found|named)(?:\s+in\s+(?:this|the)\s+(?:text|passage|abstract|sentence))?)?"
    r"\s*(?:(?:are|is)\s*[:=\-]?|[:=\-])\s*", re.IGNORECASE)
_NONE_ITEMS = {"none", "no genes", "no gene", "n a", "na", "nil", "not applicable", "nothing", "unknown"}
# "None.", "No genes are mentioned in this text.", "There are no human genes mentioned."
_NONE_ANSWER = re.compile(r"^\s*(?:none\b|(?:there\s+(?:are|is)\s+)?no\s+(?:human\s+)?genes?\b)", re.IGNORECASE)
_PARENTHETICAL = re.compile(r"\(([^()\n]*)\)")
_DESCRIPTOR = re.compile(r"\s+(?:genes?|proteins?|mrnas?|locus|loci)$", re.IGNORECASE)
_SYMBOL_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")
# "PSEN1: raised in patients", "MAPT - tau": a name, then what the model says about it
_DESCRIBED = re.compile(r"^(?P<name>[^:]+?)\s*(?::|\s[-–—])\s+(?P<rest>.+)$")
_HIDDEN_SEPARATOR = "\x00"  # a separator inside parentheses, kept from the split


class NamedGene(Protocol):
    """Anything annotated as a gene: a symbol and the other names that mean it (a paper's GeneAnnotation,
    evaluation's GoldGene)."""

    symbol: str
    aliases: Sequence[str]


Gene = TypeVar("Gene", bound=NamedGene)


def normalize_symbol(name: str) -> str:
    """The key two spellings of one gene share: TNF-α, TNF alpha and tnfalpha all give 'tnfalpha'."""
    text = unicodedata.normalize("NFKC", name).casefold()  # casefold: final sigma too
    text = "".join(_GREEK.get(ch, ch) for ch in text)
    return _NOT_ALNUM.sub("", text)


def mention_position(name: str, text: str) -> int | None:
    """Where a name first occurs in text as a whole word (not inside a longer run of letters and digits:
    TP53 is not in xTP53 or TP530), case as written; None when it does not."""
    if not name:
        return None
    match = re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", text)
    return match.start() if match else None


def mentions(names: Iterable[str], text: str) -> bool:
    """Whether text mentions any of the names (as whole words)."""
    return any(mention_position(name, text) is not None for name in names)


def genes_in_text(genes: Iterable[Gene], text: str) -> list[Gene]:
    """The genes that text mentions, by symbol or alias, in order of first mention (each once)."""
    found: list[tuple[int, int, Gene]] = []
    seen: set[str] = set()
    for order, gene in enumerate(genes):
        if gene.symbol in seen:
            continue
        positions = [p for p in (mention_position(n, text) for n in (gene.symbol, *gene.aliases)) if p is not None]
        if positions:
            seen.add(gene.symbol)
            found.append((min(positions), order, gene))
    return [gene for _, _, gene in sorted(found, key=lambda f: (f[0], f[1]))]


@dataclass(frozen=True)
class GeneAnswer:
    """What a model's answer says: the names it lists (order kept, each once after normalising), whether it
    read as a gene list or an explicit "none" (`parsed`), and the items that were not names (`rejected`)."""

    names: tuple[str, ...]
    parsed: bool
    none: bool = False
    rejected: tuple[str, ...] = ()


def parse_gene_answer(answer: str) -> GeneAnswer:
    """Read a model's answer to the list-the-genes prompt.

    The answer is its first block: leading blank lines and intro lines ending in ':' are skipped, and it ends
    at the first blank line after a name (a bulleted list may have blank lines between its items). An answer
    parses when it is an explicit "none" or lists at least one name and nothing that is not a name (an item of
    more than 4 words or 40 characters is a sentence)."""
    block = _answer_block(answer)
    if _NONE_ANSWER.match(block) and not _names_after_none(block):
        return GeneAnswer((), parsed=True, none=True)
    names: list[str] = []
    rejected: list[str] = []
    seen: set[str] = set()
    said_none = False
    for line in block.split("\n"):
        body = _LABEL.sub("", _BULLET.sub("", line))
        if _BULLET.match(line):  # a list item that describes its gene ("1. PSEN1: raised, then ..."): the name
            described = _DESCRIBED.match(body)
            if described and len(described.group("name").split()) <= MAX_NAME_WORDS:
                body = described.group("name")
        for raw in _SPLIT.split(_hide_separators_in_parentheses(body)):
            for item in _items(_BULLET.sub("", raw.replace(_HIDDEN_SEPARATOR, ","))):
                key = normalize_symbol(item)
                if not key:
                    continue
                if " ".join(_NOT_ALNUM.sub(" ", item.lower()).split()) in _NONE_ITEMS:
                    said_none = True
                    continue
                if len(item.split()) > MAX_NAME_WORDS or len(item) > MAX_NAME_CHARS or not re.search("[a-z]", key):
                    rejected.append(item)
                    continue
                if key not in seen:
                    seen.add(key)
                    names.append(item)
    if said_none and not names and not rejected:
        return GeneAnswer((), parsed=True, none=True)
    return GeneAnswer(tuple(names), parsed=bool(names) and not rejected, rejected=tuple(rejected))


def parse_gene_list(answer: str) -> list[str]:
    """The gene names in a model's answer (see parse_gene_answer)."""
    return list(parse_gene_answer(answer).names)


def _answer_block(answer: str) -> str:
    lines: list[str] = []
    gap = False
    for raw in answer.replace("\r", "").replace("**", "").split("\n"):
        line = raw.strip()
        if not line:
            gap = bool(lines)
            continue
        if line.endswith(":") and not _LABEL.sub("", line).strip(" :"):
            continue  # a bare label ("Genes:") on its own line
        if line.endswith(":") and len(line.split()) > 1 and not lines:
            continue  # an intro line ("Here are the genes mentioned in the passage:")
        if gap and not _BULLET.match(line):
            break  # the list ended; what follows is prose
        gap = False
        lines.append(line)
    return "\n".join(lines)


def _names_after_none(block: str) -> bool:
    """'none, BRCA1' is a list with a stray 'none' in it, not an answer of none."""
    return bool(re.match(r"^\s*none\s*[,;]\s*\S", block, re.IGNORECASE))


def _hide_separators_in_parentheses(text: str) -> str:
    return _PARENTHETICAL.sub(lambda m: "(" + re.sub(r"[,;]", _HIDDEN_SEPARATOR, m.group(1)) + ")", text)


def _items(raw: str) -> list[str]:
    """One list item cleaned into the names it holds: quotes and markup off, 'BRCA1 (breast cancer 1)' is
    BRCA1 and 'breast cancer 1 (BRCA1)' is BRCA1, 'PSEN1: raised in patients' is PSEN1, 'the TP53 gene' is
    TP53, 'TP53/KRAS' is two names."""
    item = _clean(raw)
    described = _DESCRIBED.match(item)
    if described and len(described.group("name").split()) <= MAX_NAME_WORDS:
        item = _clean(described.group("name"))
    match = _PARENTHETICAL.search(item)
    if match:
        outside = _clean(item[:match.start()] + " " + item[match.end():])
        inside = _clean(match.group(1))
        # keep the symbol-shaped side: a symbol outside wins, a full name outside gives way to a symbol inside
        item = inside if (not outside or (" " in outside and inside and " " not in inside)) else outside
    item = _DESCRIPTOR.sub("", re.sub(r"^(?:the|a|an)\s+", "", item, flags=re.IGNORECASE)).strip()
    parts = item.split("/")
    if len(parts) > 1 and all(_SYMBOL_PART.match(p) and len(p) > 1 and re.search("[A-Za-z]", p) for p in parts):
        return parts
    return [item] if item else []


def _clean(text: str) -> str:
    return text.strip().strip("\"'`*_[]{}").rstrip(".:!?").strip().strip("\"'`*_").strip()
