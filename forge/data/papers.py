"""The `ScientificPaper` record every reader produces and every preprocessing step consumes, with the
validation that turns a raw mapping (a JSON object, a dataset row) into one or explains why it cannot.

A paper is immutable: steps return changed copies (`map_text`, `model_copy`). A chunk of a paper is a
paper too, with the same `id` and a `chunk_index`, so a split by id keeps all of a paper's chunks together.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Keys that other corpora use for our fields; the first matching key of a record wins.
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "paper_id", "pmid", "pmcid", "doc_id", "article_id"),
    "title": ("title",),
    "abstract": ("abstract", "summary"),
    "sections": ("sections", "body_sections"),
    "full_text": ("full_text", "text", "body", "content"),
    "authors": ("authors",),
    "year": ("year", "publication_year"),
    "journal": ("journal", "venue"),
    "doi": ("doi",),
    "keywords": ("keywords",),
    "quality_score": ("quality_score", "quality", "score"),
    "genes": ("genes", "gene_annotations", "gold_genes"),
    "metadata": ("metadata",),
}
PAPER_FIELDS = ("title", "abstract", "sections", "full_text", "keywords")
_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._:/-]{0,39}$")


class Section(BaseModel):
    """One headed part of a paper's body; the heading may be empty, and so may the text."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    heading: str = ""
    text: str = ""


class GeneAnnotation(BaseModel):
    """A gold gene of a paper: its official symbol and the other names the paper may use for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    symbol: str
    aliases: tuple[str, ...] = ()

    @field_validator("symbol")
    @classmethod
    def _symbol_is_a_symbol(cls, value: str) -> str:
        if not _SYMBOL.match(value):
            raise ValueError(f"gene symbol {value!r} is not a symbol (letters, digits, '-', '.', no spaces)")
        return value


class ScientificPaper(BaseModel):
    """A paper: identity, text (abstract, headed sections or full text), bibliography and gold genes."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$")
    title: str = ""
    abstract: str = ""
    sections: tuple[Section, ...] = ()
    full_text: str = ""
    authors: tuple[str, ...] = ()
    year: int | None = Field(None, ge=1800, le=2100)
    journal: str = ""
    doi: str = ""
    keywords: tuple[str, ...] = ()
    quality_score: float | None = Field(None, ge=0.0, le=1.0)
    genes: tuple[GeneAnnotation, ...] = ()
    metadata: dict[str, Any] = Field(default_factory=dict)
    chunk_index: int | None = Field(None, ge=0)

    @field_validator("sections", mode="before")
    @classmethod
    def _sections_from_mapping(cls, value: Any) -> Any:
        if isinstance(value, Mapping):  # {"Methods": "...", ...}
            return [{"heading": k, "text": v} for k, v in value.items()]
        if isinstance(value, list | tuple):  # a bare string is a section without a heading
            return [{"text": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("genes", mode="before")
    @classmethod
    def _genes_from_symbols(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [{"symbol": g} if isinstance(g, str) else g for g in value]
        return value

    @field_validator("authors", "keywords", mode="before")
    @classmethod
    def _split_joined_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(";") if part.strip()]
        return value

    @model_validator(mode="after")
    def _has_text(self) -> ScientificPaper:
        if not has_text(self):
            raise ValueError("no text: title, abstract, sections and full_text are all empty")
        return self

    @property
    def gene_symbols(self) -> list[str]:
        """The gold gene symbols, in annotation order."""
        return [g.symbol for g in self.genes]

    @classmethod
    def from_record(cls, record: Mapping[str, Any], default_id: str) -> ScientificPaper:
        """Validate a raw mapping: known keys (and their aliases) become fields, unknown keys go to metadata."""
        if not isinstance(record, Mapping):
            raise ValueError(f"expected an object, got {type(record).__name__}")
        values: dict[str, Any] = {}
        used: set[str] = set()
        for name, keys in FIELD_ALIASES.items():
            for key in keys:
                if key in record and record[key] is not None and key not in used:
                    values[name] = record[key]
                    used.add(key)
                    break
        extra = {k: v for k, v in record.items() if k not in used and v is not None}
        if extra:
            values["metadata"] = {**extra, **(values.get("metadata") or {})}
        values.setdefault("id", default_id)
        if isinstance(values["id"], int):
            values["id"] = str(values["id"])
        if isinstance(values.get("year"), str) and values["year"].strip().isdigit():
            values["year"] = int(values["year"])
        return cls.model_validate(values)


def has_text(paper: ScientificPaper) -> bool:
    """Whether any text field of the paper holds more than whitespace."""
    return bool(paper.title.strip() or paper.abstract.strip() or paper.full_text.strip()
                or any(s.text.strip() or s.heading.strip() for s in paper.sections))


def body_text(paper: ScientificPaper) -> str:
    """The body: headed sections joined (heading on its own line), else the full text."""
    if paper.sections:
        return "\n\n".join(_section_text(s) for s in paper.sections if s.text.strip() or s.heading.strip())
    return paper.full_text


def _section_text(section: Section) -> str:
    if section.heading.strip() and section.text.strip():
        return f"{section.heading}\n{section.text}"
    return section.heading or section.text


def paper_text(paper: ScientificPaper, fields: Sequence[str] = ("title", "abstract", "sections")) -> str:
    """The paper's fields joined by blank lines, in the given order. `sections` and `full_text` both mean
    the body (each falls back to the other), and the body appears once."""
    parts: list[str] = []
    body_done = False
    for name in fields:
        if name in ("sections", "full_text"):
            if body_done:
                continue
            body_done = True
            text = body_text(paper) if name == "sections" or not paper.full_text else paper.full_text
        elif name == "keywords":
            text = f"Keywords: {', '.join(paper.keywords)}" if paper.keywords else ""
        elif name in ("title", "abstract"):
            text = getattr(paper, name)
        else:
            raise ValueError(f"unknown paper field {name!r} (expected one of {', '.join(PAPER_FIELDS)})")
        if text.strip():
            parts.append(text.strip())
    return "\n\n".join(parts)


def all_text(paper: ScientificPaper) -> str:
    """Title, abstract and body together: what deduplication and the quality filter look at."""
    return paper_text(paper, ("title", "abstract", "sections"))


def map_text(paper: ScientificPaper, transform: Callable[[str], str]) -> ScientificPaper:
    """A copy of the paper with `transform` applied to every piece of prose, headings and gene aliases
    included (so evaluation still finds an alias after the text around it was normalized). Only what the
    transform changed is copied, and a paper it left alone comes back as the same object: most steps
    touch a few pieces of a paper, and copying pydantic models dominated their cost."""
    update: dict[str, Any] = {}
    for name in ("title", "abstract", "full_text"):
        text = getattr(paper, name)
        if text and (changed := transform(text)) != text:
            update[name] = changed
    sections = tuple(_map_section(s, transform) for s in paper.sections)
    if any(new is not old for new, old in zip(sections, paper.sections)):
        update["sections"] = sections
    genes = tuple(_map_gene(g, transform) for g in paper.genes)
    if any(new is not old for new, old in zip(genes, paper.genes)):
        update["genes"] = genes
    return paper.model_copy(update=update) if update else paper


def _map_section(section: Section, transform: Callable[[str], str]) -> Section:
    heading = transform(section.heading) if section.heading else ""
    text = transform(section.text) if section.text else ""
    if heading == section.heading and text == section.text:
        return section
    return section.model_copy(update={"heading": heading, "text": text})


def _map_gene(gene: GeneAnnotation, transform: Callable[[str], str]) -> GeneAnnotation:
    aliases = tuple(transform(a) for a in gene.aliases)
    return gene if aliases == gene.aliases else gene.model_copy(update={"aliases": aliases})


def heading_matches(heading: str, patterns: Sequence[str], how: str = "contains") -> bool:
    """Whether a section heading matches any pattern, ignoring case: as a substring (`contains`), the
    whole heading without numbering or a trailing colon (`exact`), or a regular expression (`regex`)."""
    if not patterns:
        return False
    lowered = heading.strip().lower()
    if how == "exact":
        lowered = re.sub(r"^[\divx]+[.)]?\s+|[:.]$", "", lowered).strip()
        return any(lowered == p.strip().lower() for p in patterns)
    if how == "regex":
        return any(re.search(p, heading, re.IGNORECASE) for p in patterns)
    return any(p.lower() in lowered for p in patterns)


def validation_reason(error: ValidationError | ValueError) -> str:
    """A one-line reason for a rejected record: the first problem, with the field it is in."""
    if isinstance(error, ValidationError):
        first = error.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
        return f"{where}: {message}{more}" if where else f"{message}{more}"
    return str(error)
