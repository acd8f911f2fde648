"""Readers: turn the recipe's `data.sources` (demo JSON, JSON Lines, text and Markdown files, JATS and
PubMed XML, BioC, PDFs, folders of them, Hugging Face datasets on disk or by name) into validated
`ScientificPaper`s.

A record that does not validate is a `BadRecord` (source, position, reason). `on_error: skip` counts it
and goes on; `on_error: fail` raises a `DataError` naming the file and the record. A part of a record
dropped while the rest is kept (a gene annotation whose offsets miss its text) is a `ReadWarning`. A
folder source records the files it read, by format, and the files it skipped, with the reason.
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

from forge.data.detect import FORMAT_SUFFIXES, SUFFIX_FORMATS, detect_format
from forge.data.errors import DataError
from forge.data.papers import ScientificPaper, validation_reason
from forge.recipe.schema import DataSource

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


@dataclass(frozen=True)
class ReadWarning(BadRecord):
    """A part of a record that was dropped while the record itself was read (a bad gene annotation)."""


@dataclass
class ReadResult:
    """The papers read, in source order, the records dropped on the way, the files read (with their
    formats) and the files of folder sources that were skipped (with the reason)."""

    papers: list[ScientificPaper] = field(default_factory=list)
    bad: list[BadRecord] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    warnings: list[ReadWarning] = field(default_factory=list)
    formats: Counter[str] = field(default_factory=Counter)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    def dropped_by_reason(self) -> dict[str, int]:
        return dict(Counter(b.reason for b in self.bad).most_common())

    def files_line(self) -> str:
        """`read 40 files (12 jats, 20 pdf, 8 jsonl); skipped 3: notes.docx (unknown format), ...`"""
        return files_line(len(self.files), dict(self.formats.most_common()), self.skipped)


def files_line(n_files: int, formats: dict[str, int], skipped: Sequence[Sequence[str]]) -> str:
    """One line saying which files were read, by format, and every file skipped with its reason."""
    kinds = ", ".join(f"{count} {name}" for name, count in formats.items())
    line = f"read {n_files} file{'s' if n_files != 1 else ''}" + (f" ({kinds})" if kinds else "")
    if skipped:
        line += f"; skipped {len(skipped)}: " + ", ".join(f"{Path(f).name} ({why})" for f, why in skipped)
    return line


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
            for source_name, where, default_id, record in _raw_items(source, result):
                if isinstance(record, ReadWarning):
                    result.warnings.append(record)
                    continue
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


def _raw_items(source: DataSource, result: ReadResult) -> Iterator[RawItem]:
    files = result.files
    if source.hf_dataset:
        files.append(f"hf:{source.hf_dataset}[{source.hf_split}]")
        result.formats["hf_dataset"] += 1
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
        result.formats["hf_disk"] += 1
        yield from _hf_rows(str(path), _load_disk(path, source.hf_split))
        return
    for file, file_format in _files(path, fmt, result.skipped):
        files.append(str(file))
        if file.stat().st_size == 0:
            result.formats["empty"] += 1
            yield str(file), "file", file.stem, BadRecord(str(file), "file", "empty file")
            continue
        result.formats[file_format] += 1
        yield from _file_items(file, file_format, source)


def _files(path: Path, fmt: str, skipped: list[tuple[str, str]]) -> list[tuple[Path, str]]:
    """The files of a source with the format to read each in; a folder's other files go to `skipped`."""
    if path.is_file():
        return [(path, fmt if fmt != "auto" else _sniff(path))]
    found: list[tuple[Path, str]] = []
    candidates = sorted(p for p in path.rglob("*") if p.is_file()
                        and not any(part.startswith(".") for part in p.relative_to(path).parts))
    skipped_before = len(skipped)
    for file in candidates:
        if fmt != "auto":
            if file.name.lower().endswith(FORMAT_SUFFIXES.get(fmt, ())):
                found.append((file, fmt))
            else:
                skipped.append((str(file), f"not a {fmt} file ({', '.join(FORMAT_SUFFIXES.get(fmt, ()))})"))
        elif file.stat().st_size == 0:
            found.append((file, "empty"))  # reported as a bad record: an empty paper file is a mistake to see
        else:
            detected, why = detect_format(file)
            if detected is None:
                skipped.append((str(file), why))
            else:
                found.append((file, detected))
    if not found:
        wanted = sorted(FORMAT_SUFFIXES.get(fmt, ())) if fmt != "auto" else sorted(SUFFIX_FORMATS) + [".xml", ".gz"]
        passed = skipped[skipped_before:]
        listed = "; skipped " + ", ".join(f"{Path(f).name} ({why})" for f, why in passed[:5]) if passed else ""
        raise DataError(f"folder {path} holds no paper files ({', '.join(wanted)}){listed}",
                        "put paper files in it (JSON, JSON Lines, text, Markdown, JATS/PubMed/BioC XML, PDF), "
                        "or set the source's format")
    return found


def _sniff(file: Path) -> str:
    if file.stat().st_size == 0:
        return "empty"
    detected, why = detect_format(file)
    if detected is None:
        raise DataError(f"cannot tell the format of {file} ({why})",
                        "set the source's format: " + ", ".join(FILE_READERS))
    return detected


# format -> (module, function) of the reader of one file, imported when a file of that format is read
# (the PDF and XML readers pull in their libraries only then). A reader yields RawItems.
FILE_READERS: dict[str, tuple[str, str]] = {
    "demo_json": ("forge.data.readers", "read_demo_json"),
    "jsonl": ("forge.data.readers", "read_jsonl"),
    "text": ("forge.data.readers", "read_text"),
    "markdown": ("forge.data.readers", "read_markdown"),
    "jats": ("forge.data.jats", "read_jats"),
    "pubmed_xml": ("forge.data.pubmed", "read_pubmed"),
    "bioc": ("forge.data.bioc_reader", "read_bioc"),
    "pdf": ("forge.data.pdf", "read_pdf"),
}


def _file_items(file: Path, fmt: str, source: DataSource) -> Iterator[RawItem]:
    if fmt not in FILE_READERS:
        raise DataError(f"format {fmt} cannot read the file {file}", "use hf_disk for a saved dataset folder")
    import importlib

    module, function = FILE_READERS[fmt]
    yield from getattr(importlib.import_module(module), function)(file, source)


def _read_text_file(file: Path) -> str | BadRecord:
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:  # binary data, or text in another encoding
        byte = error.object[error.start]
        return BadRecord(str(file), "file", f"not UTF-8 text (byte 0x{byte:02x} at offset {error.start}): binary data?")
    except OSError as error:
        return BadRecord(str(file), "file", f"unreadable: {error.strerror or error}")
    return text if text.strip() else BadRecord(str(file), "file", "empty file")


def read_demo_json(file: Path, source: DataSource) -> Iterator[RawItem]:
    """A JSON list of papers, or an object with a `papers` list."""
    text = _read_text_file(file)
    yield from ([(str(file), "file", file.stem, text)] if isinstance(text, BadRecord)
                else _json_items(str(file), file.stem, text))


def read_jsonl(file: Path, source: DataSource) -> Iterator[RawItem]:
    """One paper object per line."""
    text = _read_text_file(file)
    yield from ([(str(file), "file", file.stem, text)] if isinstance(text, BadRecord)
                else _jsonl_items(str(file), file.stem, text))


def read_text(file: Path, source: DataSource) -> Iterator[RawItem]:
    """A plain-text paper (see parse_text_paper)."""
    text = _read_text_file(file)
    yield str(file), "file", file.stem, text if isinstance(text, BadRecord) else parse_text_paper(text)


def read_markdown(file: Path, source: DataSource) -> Iterator[RawItem]:
    """A Markdown paper (see parse_markdown_paper)."""
    text = _read_text_file(file)
    yield str(file), "file", file.stem, text if isinstance(text, BadRecord) else parse_markdown_paper(text)


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
