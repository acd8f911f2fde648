"""Preprocessing steps: a registry of named, parameterised transformations that `preprocess` in a recipe
applies to the papers in order.

A step is `function(papers, params, context) -> list of papers | StepOutput`, registered with its pydantic
arguments model: `@STEPS.register("name", Params)`. Most steps look at one paper at a time; write those
with `@per_paper` (one paper in; a paper, several papers or `Dropped(reason)` out) or `@text_step` (one
string in, one out, applied to every piece of prose), and the runner may spread them over processes.

This module imports nothing heavy: `forge validate` reads the registry to check step names and arguments.
The text algorithms live in their own modules and are imported when a step first runs.
"""
from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from forge.data.chunking import chunk_pieces
from forge.data.papers import ScientificPaper, has_text, map_text
from forge.registry import Registry

STEPS: Registry = Registry("preprocessing step")


@dataclass(frozen=True)
class StepContext:
    """What a step may use besides its arguments: the training tokenizer and the recipe settings that
    shape examples."""

    tokenizer: Any = None
    max_seq_length: int = 2048
    fields: tuple[str, ...] = ("title", "abstract", "sections")
    format: str = "causal_lm"
    seed: int = 42


@dataclass(frozen=True)
class Dropped:
    """What a per-paper step returns for a paper it removes; the reason is counted in the statistics."""

    reason: str


@dataclass
class StepOutput:
    """The papers a step kept (or made) and how many it dropped, by reason."""

    papers: list[ScientificPaper]
    dropped: dict[str, int] = field(default_factory=dict)


PaperOutcome = ScientificPaper | list[ScientificPaper] | Dropped
StepFunction = Callable[[list[ScientificPaper], Any, StepContext], "StepOutput | list[ScientificPaper]"]


def per_paper(function: Callable[[ScientificPaper, Any, StepContext], PaperOutcome]) -> StepFunction:
    """Make a step from a function of one paper. A paper left with no text is dropped as `no_text`."""

    @functools.wraps(function)
    def step(papers: list[ScientificPaper], params: Any, context: StepContext) -> StepOutput:
        kept: list[ScientificPaper] = []
        dropped: Counter[str] = Counter()
        for paper in papers:
            outcome = function(paper, params, context)
            if isinstance(outcome, Dropped):
                dropped[outcome.reason] += 1
                continue
            for result in [outcome] if isinstance(outcome, ScientificPaper) else outcome:
                if has_text(result):
                    kept.append(result)
                else:
                    dropped["no_text"] += 1
        return StepOutput(kept, dict(dropped))

    step.per_paper = True  # type: ignore[attr-defined]  # the runner may shard it over processes
    return step


def text_step(function: Callable[[str, Any, StepContext], str]) -> StepFunction:
    """Make a step from a function of one string, applied to the title, abstract, headings, section
    texts, full text and gene aliases of every paper."""

    @functools.wraps(function)
    def one(paper: ScientificPaper, params: Any, context: StepContext) -> ScientificPaper:
        return map_text(paper, lambda text: function(text, params, context))

    return per_paper(one)


def is_per_paper(function: Callable[..., Any]) -> bool:
    """Whether a step treats papers one at a time (so its input may be split across processes)."""
    return bool(getattr(function, "per_paper", False))


class StepParams(BaseModel):
    """Base of every step's arguments: unknown keys are errors and values are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


# ------------------------------------------------------------------------------------------ text steps
class RemoveCitationsParams(StepParams):
    numeric: bool = Field(True, description="Remove numeric citations: [1], [1-3], [1,4].")
    author_year: bool = Field(True, description="Remove author-year citations: (Smith et al., 2020; Lee, 2021).")


@STEPS.register("remove_citations", RemoveCitationsParams)
@text_step
def remove_citations(text: str, params: RemoveCitationsParams, context: StepContext) -> str:
    """Remove numeric and author-year citations; gene names and bracketed notation ([Ca2+], p.[Arg97Cys]) stay."""
    from forge.data.citations import remove_citations as remove

    return remove(text, numeric=params.numeric, author_year=params.author_year)


class NormalizeWhitespaceParams(StepParams):
    keep_paragraphs: bool = Field(True, description="Keep line breaks and blank lines between paragraphs.")


@STEPS.register("normalize_whitespace", NormalizeWhitespaceParams)
@per_paper
def normalize_whitespace(paper: ScientificPaper, params: NormalizeWhitespaceParams,
                         context: StepContext) -> ScientificPaper:
    """Collapse runs of spaces, trim lines, keep paragraphs, and drop sections left empty."""
    from forge.data.normalize import normalize_whitespace as normalize

    paper = map_text(paper, lambda text: normalize(text, keep_paragraphs=params.keep_paragraphs))
    sections = tuple(s for s in paper.sections if s.text)
    return paper if len(sections) == len(paper.sections) else paper.model_copy(update={"sections": sections})


class NormalizeUnicodeParams(StepParams):
    form: Literal["NFKC", "NFC"] = Field("NFKC", description="Unicode normalization form.")
    quotes: bool = Field(True, description="Curly quotes and primes become ASCII quotes.")
    dashes: bool = Field(True, description="Hyphens, en dashes and minus signs become '-'.")


@STEPS.register("normalize_unicode", NormalizeUnicodeParams)
@text_step
def normalize_unicode(text: str, params: NormalizeUnicodeParams, context: StepContext) -> str:
    """NFKC-normalize, with ASCII quotes and dashes, superscript exponents as ^, no invisible characters."""
    from forge.data.normalize import normalize_unicode as normalize

    return normalize(text, form=params.form, quotes=params.quotes, dashes=params.dashes)


class NormalizeGenomicsParams(StepParams):
    greek: Literal["names", "symbols", "keep"] = Field(
        "names", description="Greek letters: spelt out (TNF-alpha), as symbols (TNF-α), or left as written.")
    gene_case: bool = Field(True, description="Upper-case gene symbols written in lower case (brca1 -> BRCA1).")
    p_values: bool = Field(True, description="Canonical p-values: 'P=1.2x10^-8' -> 'p = 1.2e-8'.")
    units: bool = Field(True, description="Canonical units: '10uM' -> '10 μM', '5 ug/ml' -> '5 μg/mL'.")
    chromosomes: bool = Field(True, description="Canonical chromosomes and bands: 'Chr 7' -> 'chr7', '7Q31' -> '7q31'.")
    variants: bool = Field(True, description="Canonical rs IDs and HGVS: 'RS123' -> 'rs123', 'c.76a>t' -> 'c.76A>T'.")
    extra_symbols: list[str] = Field(
        default_factory=list, description="Gene symbols to case-fix besides the built-in list and each paper's genes.")


@STEPS.register("normalize_genomics", NormalizeGenomicsParams)
@per_paper
def normalize_genomics(paper: ScientificPaper, params: NormalizeGenomicsParams, context: StepContext) -> ScientificPaper:
    """One spelling for gene symbols, Greek letters, units, p-values, chromosomes, rs IDs and HGVS."""
    from forge.data.genomics import normalize_genomics as normalize, symbol_case_map

    case_map = symbol_case_map([*paper.gene_symbols, *params.extra_symbols])
    return map_text(paper, lambda text: normalize(
        text, greek=params.greek, gene_case=params.gene_case, symbols=case_map, p_values=params.p_values,
        units=params.units, chromosomes=params.chromosomes, variants=params.variants))


class StripMarkupParams(StepParams):
    html: bool = Field(True, description="Remove HTML tags (keeping their text) and decode entities.")
    latex: bool = Field(True, description="Remove LaTeX commands and math delimiters; \\alpha becomes α.")
    markdown: bool = Field(True, description="Remove Markdown emphasis, links, headings and code marks.")


@STEPS.register("strip_markup", StripMarkupParams)
@text_step
def strip_markup(text: str, params: StripMarkupParams, context: StepContext) -> str:
    """Remove HTML, LaTeX and Markdown markup, keeping the words inside it."""
    from forge.data.markup import strip_markup as strip

    return strip(text, html_tags=params.html, latex=params.latex, markdown=params.markdown)


# --------------------------------------------------------------------------------------- paper steps
class SelectSectionsParams(StepParams):
    keep: list[str] = Field(default_factory=list, description="Keep only sections whose heading matches one of these (empty: all).")
    drop: list[str] = Field(
        default_factory=lambda: ["references", "bibliography", "acknowledgements", "acknowledgments", "funding",
                                 "competing interests", "conflict of interest", "author contributions"],
        description="Drop sections whose heading matches one of these (after keep).")
    match: Literal["contains", "exact", "regex"] = Field(
        "contains", description="How a pattern matches a heading, ignoring case.")
    drop_empty: bool = Field(True, description="Drop sections with no text.")
    keep_abstract: bool = Field(True, description="Keep the abstract (it is not a section).")


@STEPS.register("select_sections", SelectSectionsParams)
@per_paper
def select_sections(paper: ScientificPaper, params: SelectSectionsParams, context: StepContext) -> ScientificPaper:
    """Keep or drop body sections by heading (by default, drop references and acknowledgements)."""
    from forge.data.papers import heading_matches

    sections = tuple(
        s for s in paper.sections
        if (s.text.strip() or not params.drop_empty)
        and (not params.keep or heading_matches(s.heading, params.keep, params.match))
        and not heading_matches(s.heading, params.drop, params.match))
    return paper.model_copy(update={"sections": sections, "abstract": paper.abstract if params.keep_abstract else ""})


class DeduplicateParams(StepParams):
    exact: bool = Field(True, description="Drop papers whose text repeats an earlier paper's (ignoring case and spacing).")
    near: bool = Field(True, description="Drop near duplicates (MinHash over word shingles).")
    near_threshold: float = Field(0.8, gt=0.0, le=1.0, description="Estimated Jaccard similarity that makes a near duplicate.")
    shingle_size: int = Field(5, ge=1, le=20, description="Words per shingle.")
    num_perm: int = Field(64, ge=16, le=1024, description="MinHash signature length (more: finer estimates, slower).")


@STEPS.register("deduplicate", DeduplicateParams)
def deduplicate(papers: list[ScientificPaper], params: DeduplicateParams, context: StepContext) -> StepOutput:
    """Drop exact and near-duplicate papers, keeping the first of each group."""
    from forge.data.dedup import find_duplicates
    from forge.data.papers import all_text

    duplicates = find_duplicates([all_text(p) for p in papers], exact=params.exact, near=params.near,
                                 threshold=params.near_threshold, shingle_size=params.shingle_size,
                                 num_perm=params.num_perm, seed=context.seed)
    gone = {d.index for d in duplicates}
    return StepOutput([p for i, p in enumerate(papers) if i not in gone],
                      dict(Counter(f"{d.kind}_duplicate" for d in duplicates)))


class FilterQualityParams(StepParams):
    min_score: float | None = Field(None, ge=0.0, le=1.0, description="Drop papers whose quality_score is below this.")
    missing_score: Literal["keep", "drop"] = Field("keep", description="What min_score does to papers with no score.")
    min_words: int = Field(50, ge=0, description="Drop papers with fewer words (title, abstract and body).")
    max_words: int | None = Field(None, ge=1, description="Drop papers with more words.")
    english: bool = Field(True, description="Drop papers that do not read as English (function-word heuristic).")
    min_english_ratio: float = Field(0.1, ge=0.0, le=1.0, description="Share of English function words that counts as English.")


@STEPS.register("filter_quality", FilterQualityParams)
@per_paper
def filter_quality(paper: ScientificPaper, params: FilterQualityParams, context: StepContext) -> PaperOutcome:
    """Drop papers by quality score, length in words and language."""
    from forge.data.papers import all_text
    from forge.data.quality import looks_english

    if params.min_score is not None:
        if paper.quality_score is None:
            if params.missing_score == "drop":
                return Dropped("no_quality_score")
        elif paper.quality_score < params.min_score:
            return Dropped("low_quality")
    text = all_text(paper)
    words = len(text.split())
    if words < params.min_words:
        return Dropped("too_short")
    if params.max_words is not None and words > params.max_words:
        return Dropped("too_long")
    if params.english and not looks_english(text, params.min_english_ratio):
        return Dropped("not_english")
    return paper


class ChunkParams(StepParams):
    max_tokens: int | None = Field(None, ge=16, description="Tokens per chunk; null: training.max_seq_length.")
    overlap: int = Field(0, ge=0, description="Tokens shared by consecutive chunks.")

    @model_validator(mode="after")
    def _overlap_below_budget(self) -> ChunkParams:
        if self.max_tokens is not None and self.overlap >= self.max_tokens:
            raise ValueError(f"overlap ({self.overlap}) must be smaller than max_tokens ({self.max_tokens})")
        return self


@STEPS.register("chunk", ChunkParams)
@per_paper
def chunk(paper: ScientificPaper, params: ChunkParams, context: StepContext) -> PaperOutcome:
    """Cut long papers into chunks of at most max_tokens tokens (with overlap); chunks keep the paper's id."""
    return chunk_pieces(paper, params.max_tokens or context.max_seq_length, params.overlap, context.tokenizer,
                        context.format, context.fields)
