"""IOB/CoNLL files as the data of a token classifier: one word and its tag per line (`word TAB tag`, or columns
separated by spaces with the tag last), a blank line between sentences, as BC2GM-IOB, JNLPBA and the BioNLP
corpora ship. `build_conll_datasets(recipe)` reads the recipe's conll sources, takes the label set from the
data and splits the sentences into train/validation/test datasets (`id`, `words`, `tags` as class labels).
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.data.errors import DataError

_TAG = re.compile(r"O|[BI]-\S+")
DOC_START = "-DOCSTART-"  # CoNLL-2003's document separator: not a word
CONLL_SUFFIXES = (".conll", ".iob", ".iob2", ".bio", ".tsv", ".txt")


@dataclass(frozen=True)
class TaggedSentence:
    """One sentence: its words and their IOB tags; id is `file:line` of its first word."""

    id: str
    words: tuple[str, ...]
    tags: tuple[str, ...]


def read_conll(path: Path) -> list[TaggedSentence]:
    """The sentences of one CoNLL/IOB file, in order; a malformed line raises DataError with file:line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}", "give a UTF-8 text file of 'word TAB tag' lines") from None
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    first = 0

    def close() -> None:
        if words:
            sentences.append(TaggedSentence(f"{path.name}:{first}", tuple(words), tuple(tags)))
            words.clear()
            tags.clear()

    for number, line in enumerate(lines, start=1):
        if not line.strip():
            close()
            continue
        columns = line.split("\t") if "\t" in line else line.split()
        columns = [c.strip() for c in columns]
        if columns[0] == DOC_START:
            close()
            continue
        if len(columns) < 2 or not columns[0]:
            raise DataError(f"{path}:{number}: expected 'word TAB tag', got {line[:60]!r}",
                            "one word and its IOB tag per line, a blank line between sentences")
        tag = columns[-1]
        if not _TAG.fullmatch(tag):
            raise DataError(f"{path}:{number}: tag {tag!r} is not O, B-TYPE or I-TYPE",
                            "tags are IOB: O outside, B-TYPE opens a mention, I-TYPE continues it")
        if not words:
            first = number
        words.append(columns[0])
        tags.append(tag)
    close()
    return sentences


def conll_files(path: Path) -> list[Path]:
    """A file, or the CoNLL files of a folder (by suffix, sorted; hidden files left out)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data source {path} does not exist", "check data.sources[].path (relative to the recipe)")
    if path.is_file():
        return [path]
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in CONLL_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not found:
        raise DataError(f"folder {path} holds no CoNLL files ({', '.join(CONLL_SUFFIXES)})",
                        "put the IOB files in it, or point the source at one file")
    return found


def label_names(sentences: Iterable[TaggedSentence]) -> list[str]:
    """The labels a classifier of these sentences needs: O, then B- and I- of every mention type in the data
    (both, even where the data has only one of them), types sorted."""
    types = sorted({tag[2:] for s in sentences for tag in s.tags if tag != "O"})
    return ["O"] + [f"{prefix}-{kind}" for kind in types for prefix in ("B", "I")]


def read_conll_sources(sources: Sequence[Any]) -> tuple[list[TaggedSentence], list[str]]:
    """The sentences of every source in order, and the files read."""
    sentences: list[TaggedSentence] = []
    files: list[str] = []
    for source in sources:
        if not source.path:
            raise DataError("a conll data source has no path", "give each conll source a path (a file or folder)")
        for file in conll_files(Path(source.path)):
            files.append(str(file))
            sentences += read_conll(file)
    return sentences, files


def build_conll_datasets(recipe: Any) -> Any:
    """The recipe's conll sources as a DataBundle: sentences split by the recipe's data.split (seeded), each row
    `id`, `words` and `tags` (a sequence of class labels whose names are the classifier's labels)."""
    import datasets

    from forge.data.pipeline import DataBundle, DataStats
    from forge.data.split import split_paper_ids

    started = time.perf_counter()
    sentences, files = read_conll_sources(recipe.data.sources)
    if not sentences:
        raise DataError(f"no tagged sentences in {', '.join(files)}", "check the files: word TAB tag lines")
    seen: set[str] = set()
    for s in sentences:  # two sources with files of the same name would share ids
        if s.id in seen:
            raise DataError(f"two sentences have the id {s.id}: two conll files share a name",
                            "give the files distinct names")
        seen.add(s.id)
    if recipe.data.max_papers:
        sentences = sentences[:recipe.data.max_papers]
    names = label_names(sentences)
    split = recipe.data.split
    ids = split_paper_ids((s.id for s in sentences), split.validation, split.test, recipe.run.seed)
    features = datasets.Features({"id": datasets.Value("string"),
                                  "words": datasets.Sequence(datasets.Value("string")),
                                  "tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    stats = DataStats(sources=files, papers_read=len(sentences), papers_after_preprocess=len(sentences),
                      units_after_preprocess=len(sentences))
    built = {}
    for part in ("train", "validation", "test"):
        rows = [s for s in sentences if s.id in ids[part]]
        stats.papers_by_split[part] = stats.examples_by_split[part] = len(rows)
        built[part] = datasets.Dataset.from_dict(
            {"id": [s.id for s in rows], "words": [list(s.words) for s in rows],
             "tags": [[names.index(t) for t in s.tags] for s in rows]}, features=features)
    stats.seconds["total"] = time.perf_counter() - started
    return DataBundle(train=built["train"], validation=built["validation"], test=built["test"], papers_test=[],
                      stats=stats)
