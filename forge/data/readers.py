"""Readers: turn the recipe's `data.sources` (demo JSON, JSON Lines, text and Markdown files, folders of
them, Hugging Face datasets on disk or by name) into validated `ScientificPaper`s.

A record that does not validate is a `BadRecord` (source, position, reason). `on_error: skip` counts it
and goes on; `on_error: fail` raises a `DataError` naming the file and the record.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from forge.data.errors import DataError
from forge.data.papers import ScientificPaper, validation_reason
from forge.recipe.schema import DataSource

SUFFIX_FORMATS = {".json": "demo_json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "text",
                  ".md": "markdown", ".markdown": "markdown"}
HF_DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# "Abstract", "Abstract:" or "ABSTRACT. text", but not "Abstraction is..."
_ABSTRACT_LINE = re.compile(r"^\s*abstract\s*(?:[:.\u2014-]\s*(.*)|$)", re.IGNORECASE)
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class BadRecord:
    """A record that was not read: where it is and why."""

    source: str
    where: str  # "record 12", "line 13", or "file" when the whole file could not be read
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.where}: {self.reason}"


@dataclass
class ReadResult:
    """The papers read, in source order, and the records dropped on the way."""

    papers: list[ScientificPaper] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    def dropped_by_reason(self) -> dict[str, int]:
        return dict(Counter(b.reason for b in self.bad).most_common())


# A raw item of a source: (source name, where, id to use when the record has none, the record or the
# reason it could not even be parsed).
RawItem = tuple[str, str, str, "dict[str, Any] | BadRecord"]


def read_sources(sources: Sequence[DataSource], on_error: Literal["skip", "fail"] = "skip",
                 max_papers: int | None = None, progress: bool = False) -> ReadResult:
    """Read every source in order into papers; stop once `max_papers` good papers are read."""
    from forge.console import progress_bar

    result = ReadResult()
    seen: dict[str, str] = {}
    with progress_bar(desc="reading papers", unit=" papers", disable=not progress, leave=False,
              delay=1) as bar:  # a bar only for corpora that take a while
        for source in sources:
            for source_name, where, default_id, record in _raw_items(source, result.files):
                bad = record if isinstance(record, BadRecord) else None
                if bad is None:
                    try:
                        paper = ScientificPaper.from_record(record, default_id)
                    except (ValidationError, ValueError) as error:
                        bad = BadRecord(source_name, where, validation_reason(error))
                    else:
                        if paper.id in seen:
                            bad = BadRecord(source_name, where, f"duplicate id {paper.id!r} (first at {seen[paper.id]})")
                        else:
                            seen[paper.id] = f"{source_name} {where}"
                            result.papers.append(paper)
                            bar.update(1)
                if bad is not None:
                    if on_error == "fail":
                        raise DataError(f"bad record: {bad}", "fix the record, or set data.on_error: skip")
                    result.bad.append(bad)
                if max_papers is not None and len(result.papers) >= max_papers:
                    return result
    return result


def source_digests(sources: Sequence[DataSource]) -> dict[str, str]:
    """sha256 of every local file the sources name (each file of a folder), keyed by absolute path; a run
    records them so that a resume can tell when its data changed. Hub datasets and missing paths are left out
    (the reader reports a missing path)."""
    import hashlib

    digests: dict[str, str] = {}
    for source in sources:
        if not source.path:
            continue
        path = Path(source.path).resolve()
        files = [path] if path.is_file() else sorted(
            p for p in path.rglob("*") if p.is_file() and not any(part.startswith(".")
                                                                  for part in p.relative_to(path).parts)
        ) if path.is_dir() else []
        for file in files:
            digest = hashlib.sha256()
            with file.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            digests[str(file)] = digest.hexdigest()
    return digests


def _raw_items(source: DataSource, files: list[str]) -> Iterator[RawItem]:
    if source.hf_dataset:
        files.append(f"hf:{source.hf_dataset}[{source.hf_split}]")
        yield from _hf_rows(source.hf_dataset, _load_hub(source.hf_dataset, source.hf_split))
        return
    if not source.path:
        raise DataError("a data source has neither path nor hf_dataset", "give each source a path or an hf_dataset")
    path = Path(source.path)
    if not path.exists():
        raise DataError(f"data source {path} does not exist", "check data.sources[].path (relative to the recipe)")
    fmt = source.format
    if fmt == "hf_disk" or (fmt == "auto" and path.is_dir() and any((path / m).exists() for m in HF_DISK_MARKERS)):
        files.append(str(path))
        yield from _hf_rows(str(path), _load_disk(path, source.hf_split))
        return
    for file in _files(path, fmt):
        files.append(str(file))
        yield from _file_items(file, fmt if fmt != "auto" else _sniff(file))


def _files(path: Path, fmt: str) -> list[Path]:
    if path.is_file():
        return [path]
    wanted = {s for s, f in SUFFIX_FORMATS.items() if fmt in ("auto", f)}
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in wanted
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not found:
        raise DataError(f"folder {path} holds no paper files ({', '.join(sorted(wanted))})",
                        "put .json, .jsonl, .txt or .md files in it, or set the source's format")
    return found


def _sniff(file: Path) -> str:
    if file.suffix.lower() in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[file.suffix.lower()]
    with file.open(encoding="utf-8", errors="replace") as handle:
        head = handle.read(4096).lstrip()
    if head.startswith("["):
        return "demo_json"
    if head.startswith("{"):
        first = head.split("\n", 1)[0]
        try:
            json.loads(first)
            return "jsonl"
        except json.JSONDecodeError:
            return "demo_json"
    raise DataError(f"cannot tell the format of {file}", "set the source's format: demo_json, jsonl, text or markdown")


def _file_items(file: Path, fmt: str) -> Iterator[RawItem]:
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:  # binary data, or text in another encoding
        byte = error.object[error.start]
        reason = f"not UTF-8 text (byte 0x{byte:02x} at offset {error.start}): binary data?"
        yield name, "file", file.stem, BadRecord(name, "file", reason)
        return
    except OSError as error:
        yield name, "file", file.stem, BadRecord(name, "file", f"unreadable: {error.strerror or error}")
        return
    if not text.strip():
        yield name, "file", file.stem, BadRecord(name, "file", "empty file")
        return
    if fmt == "demo_json":
        yield from _json_items(name, file.stem, text)
    elif fmt == "jsonl":
        yield from _jsonl_items(name, file.stem, text)
    elif fmt == "text":
        yield name, "file", file.stem, parse_text_paper(text)
    elif fmt == "markdown":
        yield name, "file", file.stem, parse_markdown_paper(text)
    else:
        raise DataError(f"format {fmt} cannot read the file {file}", "use hf_disk for a saved dataset folder")


def _json_items(name: str, stem: str, text: str) -> Iterator[RawItem]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        yield name, "file", stem, BadRecord(name, "file", f"invalid JSON: {error}")
        return
    records = data.get("papers") if isinstance(data, dict) else data
    if not isinstance(records, list):
        yield name, "file", stem, BadRecord(name, "file", "expected a JSON list of papers or an object with a 'papers' list")
        return
    for i, record in enumerate(records):
        where = f"record {i}"
        yield name, where, f"{stem}-{i}", _as_record(name, where, record)


def _jsonl_items(name: str, stem: str, text: str) -> Iterator[RawItem]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            yield name, where, stem, BadRecord(name, where, f"invalid JSON: {error.msg}")
            continue
        yield name, where, f"{stem}-{number}", _as_record(name, where, record)


def _as_record(name: str, where: str, record: Any) -> dict[str, Any] | BadRecord:
    """A JSON object is a paper record; a bare string is a paper's full text (a list of texts is a corpus)."""
    if isinstance(record, dict):
        return record
    if isinstance(record, str):
        return {"full_text": record}
    return BadRecord(name, where, f"expected an object or a string, got {type(record).__name__}")


def parse_text_paper(text: str) -> dict[str, Any]:
    """A plain-text paper: the first line is the title; a paragraph among the first three that starts
    with 'Abstract' (or a lone 'Abstract' line and the paragraph after it) is the abstract; the rest is
    the full text."""
    paragraphs = [p.strip() for p in _PARAGRAPH_BREAK.split(text.strip()) if p.strip()]
    if not paragraphs:
        return {}
    title, _, rest = paragraphs[0].partition("\n")
    paragraphs = ([rest.strip()] if rest.strip() else []) + paragraphs[1:]
    record: dict[str, Any] = {"title": title.strip()}
    body: list[str] = []
    abstract_next = False
    for i, paragraph in enumerate(paragraphs):
        first_line, _, more = paragraph.partition("\n")
        match = _ABSTRACT_LINE.match(first_line)
        if abstract_next:
            record["abstract"], abstract_next = paragraph, False
        elif match and "abstract" not in record and i < 3:
            inline = " ".join(filter(None, [(match.group(1) or "").strip(), more.strip()]))
            record["abstract"], abstract_next = inline, not inline
        else:
            body.append(paragraph)
    record["full_text"] = "\n\n".join(body)
    return record


def parse_markdown_paper(text: str) -> dict[str, Any]:
    """A Markdown paper: optional YAML front matter (any paper field: id, genes, year...), the first `#`
    heading is the title, an `Abstract` heading the abstract, every other heading a section. Text before
    the title is kept as an untitled section; `#` lines inside code fences are not headings."""
    record: dict[str, Any] = {}
    if text.startswith("---"):
        import yaml

        head, sep, rest = text[3:].partition("\n---")
        if sep:
            front = yaml.safe_load(head)
            if isinstance(front, dict):
                record.update(front)
            text = rest.split("\n", 1)[1] if "\n" in rest else ""
    sections: list[dict[str, str]] = []
    heading: str | None = None
    lines: list[str] = []

    def close() -> None:
        body = "\n".join(lines).strip()
        if heading is None and not body:
            return
        if heading is not None and heading.strip().lower().rstrip(":") == "abstract" and "abstract" not in record:
            record["abstract"] = body
        else:
            sections.append({"heading": heading or "", "text": body})

    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match and len(match.group(1)) == 1 and "title" not in record and heading is None:
            close()
            record["title"], lines = match.group(2), []
        elif match:
            close()
            heading, lines = match.group(2), []
        else:
            lines.append(line)
    close()
    record.setdefault("sections", sections)
    return record


def _load_disk(path: Path, split: str) -> Iterable[dict[str, Any]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as error:
        raise DataError(f"cannot load the saved dataset {path}: {error}", "save it with Dataset.save_to_disk") from error
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"saved dataset {path} has no split {split!r}",
                            f"set hf_split to one of {', '.join(loaded)}")
        loaded = loaded[split]
    return loaded


def _load_hub(name: str, split: str) -> Iterable[dict[str, Any]]:
    import datasets

    try:
        return datasets.load_dataset(name, split=split)
    except Exception as error:  # the hub raises many types; each means "cannot get this dataset"
        raise DataError(f"cannot load Hugging Face dataset {name!r} split {split!r}: {error}".splitlines()[0],
                        "check the name and the network, or save it with save_to_disk and use path") from error


def _hf_rows(name: str, rows: Iterable[dict[str, Any]]) -> Iterator[RawItem]:
    stem = Path(name).name or name
    for i, row in enumerate(rows):
        yield name, f"record {i}", f"{stem}-{i}", row
