"""The `jats` reader: JATS 1.x article XML as PubMed Central's Open Access subset ships it, one `article`
or a `pmc-articleset` of many, into paper records.

front/article-meta gives the title, the abstract (a structured one keeps its labels: "Background: ..."),
keywords (kwd-group), ids (pmid, pmcid, doi), year and authors; journal-meta the journal. Every `sec` of
the body (and of back matter, appendices included) becomes a section whose heading is the path of titles,
"Methods / Cell culture". The reference list, footnotes and acknowledgements are dropped; figure and table
captions become sections of their own unless the source sets `captions: false`.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

from forge.data.readers import BadRecord, RawItem
from forge.data.safe_xml import XmlProblem, child, children, element_text, iter_elements, local_name
from forge.recipe.schema import DataSource

# Inline content left out of running text: floats (their captions are read apart), formulas, media.
NOT_PROSE = frozenset({"fig", "fig-group", "table-wrap", "table-wrap-group", "table", "math", "tex-math",
                       "graphic", "media", "alternatives", "supplementary-material", "disp-formula"})
BLOCKS = frozenset({"p", "list", "disp-quote", "statement", "boxed-text", "def-list", "speech", "verse-group",
                    "preformat", "code"})
FLOATS = frozenset({"fig", "table-wrap"})
DATE_PREFERENCE = ("epub", "ppub", "pub", "epub-ppub", "collection")


def read_jats(file: Path, source: DataSource) -> Iterator[RawItem]:
    """Every article of the file as a record; a file that stops being XML keeps the articles before the break."""
    name, count = str(file), 0
    try:
        for article, root in iter_elements(file, {"article"}):
            count += 1
            record = jats_record(article, captions=source.captions)
            where = "article" if root == "article" else f"article {count}"
            where += f" ({record['id']})" if "id" in record else ""
            yield name, where, f"{file.stem}-{count}" if root != "article" else file.stem, record
    except XmlProblem as problem:
        yield name, problem.where, file.stem, BadRecord(name, problem.where, problem.reason)
        return
    if count == 0:
        yield name, "file", file.stem, BadRecord(name, "file", "no <article> element (not JATS?)")


def jats_record(article: Element, captions: bool = True) -> dict[str, Any]:
    """One `article` element as a paper record (the keys of ScientificPaper.from_record)."""
    meta = child(article, "front", "article-meta")
    journal_meta = child(article, "front", "journal-meta")
    ids = {(e.get("pub-id-type") or "").lower(): element_text(e) for e in children(meta, "article-id")}
    pmcid = ids.get("pmcid") or ids.get("pmc") or ""
    if pmcid and not pmcid.upper().startswith("PMC"):
        pmcid = f"PMC{pmcid}"
    record: dict[str, Any] = {
        "title": element_text(child(meta, "title-group", "article-title"), NOT_PROSE),
        "abstract": _abstract(meta),
        "sections": _sections(child(article, "body"), captions) + _back_sections(child(article, "back"), captions),
        "keywords": [element_text(k) for group in children(meta, "kwd-group") for k in children(group, "kwd")
                     if element_text(k)],
        "authors": _authors(meta),
        "journal": element_text(child(journal_meta, "journal-title-group", "journal-title"))
        or element_text(child(journal_meta, "journal-title")),
        "doi": ids.get("doi", ""),
        "year": _year(meta),
        "pmid": ids.get("pmid") or None,
        "pmcid": pmcid or None,
    }
    identifier = record["pmid"] or record["pmcid"] or record["doi"]
    if identifier:
        record["id"] = identifier
    return {k: v for k, v in record.items() if v not in (None, "", [])}


def _abstract(meta: Element | None) -> str:
    abstracts = children(meta, "abstract")
    plain = [a for a in abstracts if not a.get("abstract-type")] or \
        [a for a in abstracts if a.get("abstract-type") in ("structured", "summary")] or abstracts[:1]
    if not plain:
        return ""
    abstract = plain[0]
    parts = []
    for element in abstract:
        kind = local_name(element.tag)
        if kind == "sec":
            label = element_text(child(element, "title")) or element_text(child(element, "label"))
            text = " ".join(element_text(p, NOT_PROSE) for p in element if local_name(p.tag) in BLOCKS)
            parts.append(f"{label.rstrip(':.')}: {text}" if label else text)
        elif kind in BLOCKS:
            parts.append(element_text(element, NOT_PROSE))
    return "\n".join(p for p in parts if p.strip())


def _sections(container: Element | None, captions: bool, path: tuple[str, ...] = ()) -> list[dict[str, str]]:
    """The container's own paragraphs as one section headed by `path`, then its figure and table captions,
    then each nested `sec` in order."""
    if container is None:
        return []
    out: list[dict[str, str]] = []
    paragraphs = [element_text(e, NOT_PROSE) for e in container if local_name(e.tag) in BLOCKS]
    text = "\n".join(p for p in paragraphs if p)
    if text:
        out.append({"heading": " / ".join(path), "text": text})
    if captions:
        out += _captions(container)
    for sec in children(container, "sec") + children(container, "app"):
        title = element_text(child(sec, "title"), NOT_PROSE) or element_text(child(sec, "label"))
        out += _sections(sec, captions, path + (title,) if title else path)
    return out


def _captions(container: Element) -> list[dict[str, str]]:
    """Captions of the figures and tables in this container's own content (not in its nested sections)."""
    found: list[dict[str, str]] = []

    def visit(element: Element) -> None:
        for node in element:
            kind = local_name(node.tag)
            if kind in FLOATS:
                caption = child(node, "caption")
                text = " ".join(element_text(e, NOT_PROSE) for e in (caption if caption is not None else [])
                                if local_name(e.tag) in ("title", "p"))
                label = element_text(child(node, "label")) or ("Figure" if kind == "fig" else "Table")
                if text:
                    found.append({"heading": label, "text": text})
            elif kind not in ("sec", "app"):
                visit(node)

    visit(container)
    return found


def _back_sections(back: Element | None, captions: bool) -> list[dict[str, str]]:
    """Sections and appendices of the back matter; ref-list, fn-group, ack and notes are dropped."""
    if back is None:
        return []
    out: list[dict[str, str]] = []
    for element in back:
        kind = local_name(element.tag)
        if kind == "sec":
            out += _sections(element, captions, (element_text(child(element, "title"), NOT_PROSE),)
                             if child(element, "title") is not None else ())
        elif kind == "app-group":
            for app in children(element, "app"):
                title = element_text(child(app, "title"), NOT_PROSE) or element_text(child(app, "label"))
                out += _sections(app, captions, (title,) if title else ())
    return out


def _authors(meta: Element | None) -> list[str]:
    names = []
    for group in children(meta, "contrib-group"):
        for contrib in children(group, "contrib"):
            if contrib.get("contrib-type", "author") != "author":
                continue
            name = child(contrib, "name")
            if name is not None:
                full = " ".join(filter(None, [element_text(child(name, "given-names")),
                                              element_text(child(name, "surname"))]))
            else:
                full = element_text(child(contrib, "collab"))
            if full:
                names.append(full)
    return names


def _year(meta: Element | None) -> int | None:
    dates = children(meta, "pub-date")

    def rank(date: Element) -> int:
        kind = date.get("pub-type") or date.get("date-type") or ""
        return DATE_PREFERENCE.index(kind) if kind in DATE_PREFERENCE else len(DATE_PREFERENCE)

    for date in sorted(dates, key=rank):
        year = element_text(child(date, "year"))
        if year.isdigit():
            return int(year)
    return None

