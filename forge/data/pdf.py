"""The `pdf` reader: a PDF with a text layer into one paper record, through pdfminer.six (MIT licensed).

pdfminer gives the text lines of each page with their position, font size and font name; this module
puts them in reading order (a two-column page left column first, then the right, with full-width lines
above and below where they stand), then recovers the structure where the layout allows: the title (the
largest type near the top of page one), the abstract (an "Abstract" heading or an "Abstract:" line),
section headings (bold or larger short lines, numbered lines such as "2.1 Cell culture", and the usual
names), keywords ("Keywords:" line). "References" (or "Bibliography") and everything after it is cut,
words hyphenated at line ends are joined, and bare page numbers and running headers and footers are dropped. A PDF without a text layer
(scanned pages) is a bad record: there is no OCR.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forge.data.readers import BadRecord, RawItem
from forge.recipe.schema import DataSource

KNOWN_HEADINGS = re.compile(
    r"^(?:(?:\d+(?:\.\d+)*|[IVXLC]+)\.?\s+)?(abstract|summary|introduction|background|results|discussion|"
    r"conclusions?|methods|materials and methods|methods and materials|experimental procedures|"
    r"results and discussion|references|bibliography|literature cited|acknowledge?ments|keywords?)\s*:?$",
    re.IGNORECASE)
NUMBERED = re.compile(r"^(?:\d+(?:\.\d+)*|[IVXLC]+)\.?\s+[A-Z][^.!?]{1,80}$")
CUT_HEADINGS = ("references", "bibliography", "literature cited")
_ABSTRACT_INLINE = re.compile(r"^abstract\s*[:.\u2014-]\s*(\S.*)$", re.IGNORECASE)
_KEYWORDS = re.compile(r"^key\s*words?\s*[:.\u2014-]\s*(.*)$", re.IGNORECASE)
_PAGE_NUMBER = re.compile(r"^\s*(?:page\s+)?\d{1,4}(?:\s*(?:of|/)\s*\d{1,4})?\s*$", re.IGNORECASE)


@dataclass
class Line:
    """One text line of a page, in PDF coordinates (y grows upwards)."""

    text: str
    page: int
    x0: float
    x1: float
    y0: float
    y1: float
    size: float
    bold: bool
    column: int = 0  # 0 full width or single column, 1 left, 2 right


def read_pdf(file: Path, source: DataSource) -> Iterator[RawItem]:
    """The PDF as one record, or a bad record saying why it cannot be read."""
    name = str(file)
    with file.open("rb") as handle:
        if not handle.read(1024).lstrip().startswith(b"%PDF-"):
            yield name, "file", file.stem, BadRecord(name, "file", "not a PDF (no %PDF- header; wrong extension?)")
            return
    try:
        pages = extract_lines(file)
    except Exception as error:  # pdfminer raises many types for a damaged or encrypted file; each means "unreadable"
        kind = type(error).__name__
        reason = "encrypted PDF (needs a password)" if "Encryption" in kind or "Password" in kind \
            else f"unreadable PDF ({kind}: {error})".splitlines()[0]
        yield name, "file", file.stem, BadRecord(name, "file", reason)
        return
    if not any(line.text.strip() for page in pages for line in page):
        yield name, "file", file.stem, BadRecord(
            name, "file", f"no text layer ({len(pages)} page(s) of images, a scan?); Forge does no OCR")
        return
    record = pdf_record(pages)
    record["metadata"] = {"pages": len(pages)}
    yield name, "file", file.stem, record


def extract_lines(file: Path) -> list[list[Line]]:
    """The text lines of every page, in reading order."""
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LAParams, LTChar, LTTextBoxHorizontal, LTTextLineHorizontal

    pages: list[list[Line]] = []
    for number, page in enumerate(extract_pages(str(file), laparams=LAParams()), start=1):
        lines: list[Line] = []
        for box in page:
            if not isinstance(box, LTTextBoxHorizontal):
                continue
            for item in box:
                if not isinstance(item, LTTextLineHorizontal):
                    continue
                chars = [c for c in item if isinstance(c, LTChar) and c.get_text().strip()]
                text = item.get_text().rstrip("\n")
                if not chars or not text.strip():
                    continue
                sizes = Counter(round(c.size, 1) for c in chars)
                bold = sum(_is_bold(c.fontname) for c in chars) > len(chars) / 2
                lines.append(Line(text.strip(), number, item.x0, item.x1, item.y0, item.y1,
                                  sizes.most_common(1)[0][0], bold))
        pages.append(reading_order(lines, page.width))
    return pages


def _is_bold(fontname: str) -> bool:
    lowered = fontname.lower()
    return any(mark in lowered for mark in ("bold", "black", "heavy", "semibold"))


def reading_order(lines: list[Line], width: float) -> list[Line]:
    """A page's lines top to bottom; on a two-column page, full-width lines above the columns, then the left
    column, then the right, then full-width lines below."""
    middle = width / 2
    for line in lines:
        line.column = 1 if line.x1 <= middle + 2 else 2 if line.x0 >= middle - 2 else 0
    left = [line for line in lines if line.column == 1]
    right = [line for line in lines if line.column == 2]
    top_down = lambda line: (-line.y1, line.x0)  # noqa: E731 - a sort key
    if len(left) < 3 or len(right) < 3:  # one column (short lines on the left are not a column)
        for line in lines:
            line.column = 0
        return sorted(lines, key=top_down)
    columns_top = max(line.y1 for line in left + right)
    spanning = [line for line in lines if line.column == 0]
    above = [line for line in spanning if line.y0 >= columns_top - 1]
    below = [line for line in spanning if line.y0 < columns_top - 1]
    return sorted(above, key=top_down) + sorted(left, key=top_down) + sorted(right, key=top_down) \
        + sorted(below, key=top_down)


def pdf_record(pages: list[list[Line]]) -> dict[str, Any]:
    """Title, abstract, keywords and headed sections from the ordered lines of the pages."""
    running = _running_lines(pages)
    lines = [line for page in pages for line in page
             if not _PAGE_NUMBER.match(line.text) and _running_key(line) not in running]
    body_size = _body_size(lines)
    title_lines = _title_lines(lines, body_size)
    record: dict[str, Any] = {"title": " ".join(line.text for line in title_lines)}
    lines = [line for line in lines if line not in title_lines]
    preamble: list[Line] = []
    abstract: list[Line] | None = None
    sections: list[tuple[str, list[Line]]] = []
    current: list[Line] = preamble
    for line in lines:
        inline = _ABSTRACT_INLINE.match(line.text)
        keywords = _KEYWORDS.match(line.text)
        if keywords:
            record["keywords"] = [k.strip() for k in re.split(r"[;,]", keywords.group(1)) if k.strip()]
            continue
        if inline and abstract is None and not sections:
            abstract = current = [Line(inline.group(1), line.page, line.x0, line.x1, line.y0, line.y1,
                                       line.size, line.bold, line.column)]
            continue
        if _is_heading(line, body_size):
            heading = re.sub(r"\s*:$", "", line.text)
            name = KNOWN_HEADINGS.match(heading)
            word = name.group(1).lower() if name else ""
            if word in CUT_HEADINGS:
                break
            if word in ("abstract", "summary") and abstract is None and not sections:
                abstract = current = []
                continue
            if word.startswith("keyword"):
                current = []
                continue
            current = []
            sections.append((heading, current))
            continue
        current.append(line)
    record["abstract"] = join_lines(abstract or [])
    body = [{"heading": heading, "text": join_lines(part)} for heading, part in sections]
    if preamble and abstract is None:  # no abstract to tell front matter from text: keep it
        body.insert(0, {"heading": "", "text": join_lines(preamble)})
    record["sections"] = [s for s in body if s["text"] or s["heading"]]
    return {k: v for k, v in record.items() if v not in ("", [])}


def _running_key(line: Line) -> tuple[str, int]:
    """A line as a running header or footer repeats it: its text with numbers masked, at its height."""
    return re.sub(r"\d+", "#", " ".join(line.text.lower().split())), round(line.y0 / 4)


def _running_lines(pages: list[list[Line]]) -> set[tuple[str, int]]:
    """Running headers and footers (a journal's name, "Page 3 of 9"): lines at the same height with the same
    text, numbers aside, on at least three pages and half of them."""
    if len(pages) < 3:
        return set()
    counts: Counter[tuple[str, int]] = Counter()
    for page in pages:
        counts.update({_running_key(line) for line in page})
    return {key for key, n in counts.items() if n >= max(3, len(pages) / 2)}


def _body_size(lines: list[Line]) -> float:
    sizes: Counter[float] = Counter()
    for line in lines:
        sizes[line.size] += len(line.text)
    return sizes.most_common(1)[0][0] if sizes else 0.0


def _title_lines(lines: list[Line], body_size: float) -> list[Line]:
    """The largest type on the first page's upper half, if larger than the body; else its first line."""
    first = [line for line in lines if line.page == lines[0].page] if lines else []
    if not first:
        return []
    top = max(line.y1 for line in first)
    upper = [line for line in first if line.y1 >= top - 0.5 * (top - min(line.y0 for line in first))]
    biggest = max(line.size for line in upper)
    if biggest > body_size + 0.5:
        run: list[Line] = []
        for line in first:
            if line.size == biggest and (not run or run[-1] is first[first.index(line) - 1]):
                run.append(line)
            elif run:
                break
        return run
    return [first[0]] if not KNOWN_HEADINGS.match(first[0].text) else []


def _is_heading(line: Line, body_size: float) -> bool:
    text = line.text.strip()
    if KNOWN_HEADINGS.match(text):
        return True
    short = len(text) <= 100 and len(text.split()) <= 12 and not text.endswith((".", ",", ";"))
    if not short or not re.search(r"[A-Za-z]", text):
        return False
    return line.bold or line.size > body_size + 0.5 or bool(NUMBERED.match(text))


def join_lines(lines: list[Line]) -> str:
    """Lines into paragraphs: a word hyphenated at a line end is joined ("hyphen-" "ated"), a gap wider
    than a line starts a paragraph (a paragraph runs on into the next column or page)."""
    out = ""
    previous: Line | None = None
    for line in lines:
        text = line.text.strip()
        if previous is None:
            out = text
        elif _new_paragraph(previous, line):
            out += "\n" + text
        elif re.search(r"[a-z]-$", out) and text[:1].islower():
            out = out[:-1] + text  # "hyphen-" + "ated"
        elif re.search(r"\w-$", out):
            out += text  # "BRCA1-" + "associated": a real hyphen, no space
        else:
            out += " " + text
        previous = line
    return out


def _new_paragraph(previous: Line, line: Line) -> bool:
    if line.page != previous.page or line.column != previous.column:
        return False  # a paragraph runs on into the next column or page
    return previous.y0 - line.y1 > 0.9 * max(line.size, 1.0)
