"""`forge data preview RECIPE`: a few processed examples and the corpus statistics, as data (`preview`)
and as text for people (`format_preview`)."""
from __future__ import annotations

import sys
from typing import Any

from forge.data.pipeline import build_datasets
from forge.data.readers import files_line
from forge.recipe.schema import Recipe

EXAMPLE_CHARS = 600
LISTED = 50  # bad records and warnings printed by name


def preview(recipe: Recipe, tokenizer: Any = None, n: int = 3, progress: bool | None = None) -> dict[str, Any]:
    """Build the recipe's datasets and return the first `n` training examples with the statistics.
    Progress bars (on stderr, for stages that take over a second) default to on when stderr is a terminal."""
    if progress is None:
        progress = sys.stderr.isatty()
    if recipe.model.task == "token_classification":  # word-tagged sentences, not papers
        from forge.data.conll import build_conll_datasets

        bundle = build_conll_datasets(recipe)
        names = bundle.train.features["tags"].feature.names
        examples = [{"paper_id": row["id"], "words": " ".join(row["words"]),
                     "tags": " ".join(names[t] for t in row["tags"])} for row in bundle.train.select(
                         range(min(n, len(bundle.train))))]
        return {"format": "conll", "examples": examples, "stats": bundle.stats.to_dict()}
    bundle = build_datasets(recipe, tokenizer=tokenizer, progress=progress)
    return {
        "format": recipe.data.format,
        "examples": [dict(bundle.train[i]) for i in range(min(n, len(bundle.train)))],
        "stats": bundle.stats.to_dict(),
    }


def format_preview(data: dict[str, Any]) -> str:
    """The preview as a short report: reading, each step, the split, token lengths, then the examples."""
    stats = data["stats"]
    lines = [f"Data preview: {data['format']} examples from {len(stats['sources'])} source file(s)",
             f"  read {stats['papers_read']} papers, {stats['bad_records']} bad records skipped"]
    lines += [f"    {reason}: {count}" for reason, count in stats["bad_by_reason"].items()]
    lines += read_report(stats)
    if stats["steps"]:
        lines.append(f"  {'step':<22}{'in':>8}{'out':>8}{'seconds':>9}  dropped")
        for step in stats["steps"]:
            dropped = ", ".join(f"{r} {c}" for r, c in step["dropped"].items())
            lines.append(f"  {step['name']:<22}{step['papers_in']:>8}{step['papers_out']:>8}{step['seconds']:>9.2f}  {dropped}")
    lines.append(f"  after preprocessing: {stats['papers_after_preprocess']} papers"
                 + (f" in {stats['units_after_preprocess']} chunks"
                    if stats["units_after_preprocess"] != stats["papers_after_preprocess"] else ""))
    lines.append("  split: " + ", ".join(f"{s} {stats['papers_by_split'][s]} papers / {stats['examples_by_split'][s]} examples"
                                         for s in stats["papers_by_split"]))
    for split, lengths in stats["token_lengths"].items():
        lines.append(f"  tokens ({split}): p50 {lengths['p50']:.0f}, p90 {lengths['p90']:.0f}, p99 {lengths['p99']:.0f}, "
                     f"max {lengths['max']:.0f}; {lengths['over_max_seq_length']:.0f} over max_seq_length")
    fitted = stats.get("fitted") or {}
    if fitted:  # instruction/chat examples over max_seq_length: their answers were kept whole
        shortened = ", ".join(f"{name} {n}" for name, n in fitted.get("shortened", {}).items()) or "none"
        dropped = ", ".join(f"{why} {n}" for why, n in fitted.get("dropped", {}).items()) or "none"
        lines.append(f"  over max_seq_length: passage shortened to keep the whole answer: {shortened}; "
                     f"dropped: {dropped}")
    if stats.get("gene_tokens") and stats["gene_tokens"]["terms"]:
        genes = stats["gene_tokens"]
        worst = ", ".join(f"{term} ({count})" for term, count in genes["worst"])
        lines.append(f"  gene terms: {genes['terms']}, {genes['mean_tokens']:.2f} tokens each on average, "
                     f"{genes['single_token_share']:.0%} single-token; most split: {worst}")
    for i, example in enumerate(data["examples"], start=1):
        lines.append(f"\nExample {i} (paper {example.get('paper_id', '?')}):")
        for key, value in example.items():
            if key == "paper_id":
                continue
            text = "\n".join(f"{m['role']}: {_shorten(m['content'], EXAMPLE_CHARS // 2)}" for m in value) \
                if key == "messages" else _shorten(str(value), EXAMPLE_CHARS)
            lines.append(f"  {key}:")
            lines += [f"  | {line}".rstrip() for line in text.split("\n")]  # blank lines keep the bar
    return "\n".join(lines)


def read_report(stats: dict[str, Any], limit: int = LISTED) -> list[str]:
    """The files read and skipped, then every bad record and dropped annotation by file and place (the
    first `limit` of each; the statistics hold more)."""
    lines = ["  " + files_line(len(stats["sources"]), stats.get("files_by_format") or {},
                               stats.get("skipped_files") or [])]
    for title, count, named in (("bad records", stats["bad_records"], stats["bad_examples"]),
                                ("warnings (dropped, the rest of the paper kept)", stats.get("warnings", 0),
                                 stats.get("warning_examples") or [])):
        if count:
            lines.append(f"  {title}:")
            lines += [f"    {entry}" for entry in named[:limit]]
            if count > min(len(named), limit):
                lines.append(f"    ... and {count - min(len(named), limit)} more (forge data preview --json lists "
                             f"{len(named)})")
    return lines


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + " [...]"
