"""The `bioc` reader: BioC XML and BioC JSON (PubTator exports: a collection, `{"PubTator3": [...]}`, one
document or one per line) into paper records with gold genes.

Passages become the title (type `title`/`front`), the abstract (type `abstract`, with `abstract_title_*`
labels) and sections (`title_1`, `title_2` headings nest as "Methods / Cell culture"; a paragraph without a
heading takes its `section_type`); reference passages are dropped, captions kept unless `captions: false`.
Gene annotations (type Gene, GeneOrGeneProduct) become the paper's genes: one per NCBI Gene id (or per
surface form when there is none), its symbol the annotation's `name` or the commonest symbol-like mention,
every other mention an alias; the ids are kept in metadata `gene_ids` ({symbol: id}). An annotation whose
offsets do not match its text is dropped with a warning that names it; the rest of the paper is kept.

The `bioc` package gives the data structures and decodes BioC JSON. BioC XML is parsed here, with defusedxml
element by element, because bioc's XML decoder uses lxml's default parser (which expands entities) on the
whole file at once.
"""
from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

from bioc import BioCAnnotation, BioCDocument, BioCLocation, BioCPassage, BioCSentence
from bioc.biocjson.decoder import parse_doc

from pydantic import ValidationError

from forge.data.papers import GeneAnnotation
from forge.data.readers import BadRecord, RawItem, ReadWarning
from forge.data.safe_xml import XmlProblem, children, element_text, iter_elements, open_binary
from forge.recipe.schema import DataSource

GENE_TYPES = frozenset({"gene", "geneorgeneproduct", "gene_or_gene_product", "gene/protein"})
ID_KEYS = ("identifier", "ncbi gene", "ncbi_gene", "ncbigene", "gene_id", "normalized_id")
SECTION_NAMES = {"INTRO": "Introduction", "METHODS": "Methods", "RESULTS": "Results", "DISCUSS": "Discussion",
                 "CONCL": "Conclusions", "CASE": "Case report", "SUPPL": "Supplementary material",
                 "APPENDIX": "Appendix", "ACK_FUND": "Acknowledgements", "AUTH_CONT": "Author contributions",
                 "COMP_INT": "Competing interests", "ABBR": "Abbreviations", "REVIEW_INFO": "Review information"}
DROPPED_TYPES = ("ref", "table")  # reference lists; table bodies (their captions are kept)
_TITLE_LEVEL = re.compile(r"^title_(\d+)$")


def read_bioc(file: Path, source: DataSource) -> Iterator[RawItem]:
    """Every document of a BioC XML or JSON file as a record, then the warnings about its annotations."""
    with open_binary(file) as handle:
        start = handle.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    documents = _xml_documents(file) if start.startswith(b"<") else _json_documents(file)
    name, count = str(file), 0
    for item in documents:
        count += 1
        if isinstance(item, BadRecord):
            yield name, item.where, f"{file.stem}-{count}", item
            continue
        where, document, extra = item
        try:
            record, warnings = bioc_record(document, captions=source.captions, extra=extra)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
            yield name, where, f"{file.stem}-{count}", BadRecord(name, where, f"not a BioC document: {error!r}")
            continue
        yield name, where, f"{file.stem}-{count}", record
        for part, reason in warnings:
            yield name, f"{where}, {part}", "", ReadWarning(name, f"{where}, {part}", reason)
    if count == 0:
        yield name, "file", file.stem, BadRecord(name, "file", "no BioC documents in the file")


def _xml_documents(file: Path) -> Iterator[tuple[str, BioCDocument, dict[str, Any]] | BadRecord]:
    name, count = str(file), 0
    try:
        for element, _ in iter_elements(file, {"document"}):
            count += 1
            where = f"document {count}"
            try:
                document = _document_from_xml(element)
            except (KeyError, IndexError, TypeError, ValueError) as error:
                yield BadRecord(name, where, f"not a BioC document: {error}")
                continue
            yield f"{where} ({document.id})" if document.id else where, document, {}
    except XmlProblem as problem:
        yield BadRecord(name, problem.where, problem.reason)


def _document_from_xml(element: Element) -> BioCDocument:
    document = BioCDocument()
    document.id = element_text(next(iter(children(element, "id")), None))
    document.infons = _infons(element)
    for number, node in enumerate(children(element, "passage"), start=1):
        passage = BioCPassage()
        passage.offset = _offset(node, f"passage {number}")
        passage.infons = _infons(node)
        passage.text = "".join(children(node, "text")[0].itertext()) if children(node, "text") else ""
        for sentence_node in children(node, "sentence"):
            sentence = BioCSentence()
            sentence.offset = _offset(sentence_node, f"a sentence of passage {number}")
            sentence.text = "".join(children(sentence_node, "text")[0].itertext()) \
                if children(sentence_node, "text") else ""
            sentence.infons = _infons(sentence_node)
            for annotation in children(sentence_node, "annotation"):
                sentence.add_annotation(_annotation_from_xml(annotation))
            passage.add_sentence(sentence)
        for annotation in children(node, "annotation"):
            passage.add_annotation(_annotation_from_xml(annotation))
        document.add_passage(passage)
    for annotation in children(element, "annotation"):
        document.add_annotation(_annotation_from_xml(annotation))
    return document


def _annotation_from_xml(element: Element) -> BioCAnnotation:
    annotation = BioCAnnotation()
    annotation.id = element.get("id", "")
    annotation.infons = _infons(element)
    annotation.text = "".join(children(element, "text")[0].itertext()) if children(element, "text") else ""
    for location in children(element, "location"):
        try:
            annotation.add_location(BioCLocation(int(location.get("offset", "")), int(location.get("length", ""))))
        except ValueError:
            raise ValueError(f"annotation {annotation.id or annotation.text!r} has a location without a whole-number "
                             "offset and length") from None
    return annotation


def _offset(node: Element, what: str) -> int:
    text = element_text(next(iter(children(node, "offset")), None))
    if not text.lstrip("-").isdigit():
        raise ValueError(f"{what} has no whole-number <offset> (got {text!r})")
    return int(text)


def _infons(element: Element) -> dict[str, str]:
    return {infon.get("key", ""): element_text(infon) for infon in children(element, "infon")}


def _json_documents(file: Path) -> Iterator[tuple[str, BioCDocument, dict[str, Any]] | BadRecord]:
    name = str(file)
    for where, obj in _json_objects(file):
        if isinstance(obj, BadRecord):
            yield obj
            continue
        if not isinstance(obj, dict):
            yield BadRecord(name, where, f"expected a BioC document object, got {type(obj).__name__}")
            continue
        try:
            document = parse_doc(_complete(obj))
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
            yield BadRecord(name, where, f"not a BioC document: missing or bad {error}")
            continue
        document.id = str(document.id) if document.id is not None else ""
        yield f"{where} ({document.id})" if document.id else where, document, obj


def _json_objects(file: Path) -> Iterator[tuple[str, Any]]:
    """(where, document) of a BioC JSON file: one document per line is streamed line by line; anything else
    (a collection, `{"PubTator3": [...]}`, a list) is one JSON value, read whole."""
    name = str(file)
    try:
        with open_binary(file) as handle:
            first = next((line for line in handle if line.strip()), b"")
        try:
            start = json.loads(first)
            per_line = isinstance(start, dict) and "passages" in start
        except (json.JSONDecodeError, UnicodeDecodeError):
            per_line = False
        with open_binary(file) as handle:
            if per_line:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        yield f"line {number}", json.loads(line)
                    except (json.JSONDecodeError, UnicodeDecodeError) as error:
                        yield "", BadRecord(name, f"line {number}", f"invalid JSON: {getattr(error, 'msg', error)}")
                return
            raw = handle.read()
    except (EOFError, OSError, zlib.error) as error:  # a gzip stream cut short or damaged
        yield "", BadRecord(name, "file", f"cannot read: {error}")
        return
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        yield "", BadRecord(name, "file", f"invalid JSON: {error}")
        return
    for i, document in enumerate(_document_list(data)):
        yield f"document {i + 1}", document


def _document_list(data: Any) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in ("documents", "PubTator3", "PubTator"):
            if isinstance(data.get(key), list):
                return data[key]
        return [data]
    return [data]


def _complete(obj: dict[str, Any]) -> dict[str, Any]:
    """A BioC JSON document with the lists and maps PubTator leaves out, as bioc's decoder wants them."""
    document = {**obj, "infons": obj.get("infons") or {}, "relations": obj.get("relations") or []}
    document["id"] = obj.get("id", obj.get("_id", ""))
    passages = []
    for passage in obj["passages"]:
        passage = {**passage, "infons": passage.get("infons") or {}, "relations": passage.get("relations") or [],
                   "annotations": [_complete_annotation(a) for a in passage.get("annotations") or []],
                   "sentences": [{**s, "infons": s.get("infons") or {}, "relations": s.get("relations") or [],
                                  "annotations": [_complete_annotation(a) for a in s.get("annotations") or []]}
                                 for s in passage.get("sentences") or []]}
        passages.append(passage)
    document["passages"] = passages
    document["annotations"] = [_complete_annotation(a) for a in obj.get("annotations") or []]
    return document


def _complete_annotation(obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "id": str(obj.get("id", "")), "infons": obj.get("infons") or {}, "text": obj.get("text") or "",
            "locations": obj.get("locations") or []}


def bioc_record(document: BioCDocument, captions: bool = True,
                extra: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """A BioC document as a paper record, and the (annotation, reason) of every gene annotation dropped."""
    extra = extra or {}
    record: dict[str, Any] = {"id": str(document.id) if document.id else None}
    title = ""
    abstract: list[str] = []
    sections: list[dict[str, str]] = []
    path: list[str] = []
    label = ""
    for passage in document.passages:
        infons = {str(k).lower(): str(v) for k, v in (passage.infons or {}).items() if v is not None}
        kind, section_type = infons.get("type", "").lower(), infons.get("section_type", "").upper()
        text = _passage_text(passage).strip()
        _front_metadata(infons, record)
        if kind in DROPPED_TYPES or section_type == "REF" or not text:
            continue
        level = _TITLE_LEVEL.match(kind)
        if kind in ("title", "front") or (section_type == "TITLE" and not level):
            if not title:
                title = text
                continue
        if kind.startswith("abstract_title"):
            label = text.rstrip(":.")
        elif kind == "abstract" or section_type == "ABSTRACT":
            abstract.append(f"{label}: {text}" if label else text)
            label = ""
        elif level:
            depth = int(level.group(1))
            path = path[:depth - 1] + [text]
        elif "caption" in kind or section_type in ("FIG", "TABLE"):
            if captions:
                sections.append({"heading": "Table" if "table" in kind or section_type == "TABLE" else "Figure",
                                 "text": text})
        else:
            heading = " / ".join(path) if path else SECTION_NAMES.get(section_type, "")
            if sections and sections[-1]["heading"] == heading and sections[-1].get("paragraph"):
                sections[-1]["text"] += "\n" + text
            else:
                sections.append({"heading": heading, "text": text, "paragraph": "yes"})
    sections = [{"heading": s["heading"], "text": s["text"]} for s in sections]
    record.update(title=title, abstract="\n".join(abstract), sections=sections)
    for key in ("pmid", "pmcid", "doi", "journal", "year", "date"):  # PubTator3 keeps these beside the passages
        target = "year" if key == "date" else key
        if extra.get(key) and not record.get(target) and isinstance(extra[key], (str, int)):
            record[target] = str(extra[key])
    if isinstance(extra.get("authors"), list):
        record["authors"] = [str(a) for a in extra["authors"]]
    genes, gene_ids, warnings = _genes(document)
    record["genes"] = genes
    if gene_ids:
        record["gene_ids"] = gene_ids
    if isinstance(record.get("year"), str):
        match = re.search(r"\d{4}", record["year"])
        record["year"] = int(match.group()) if match else None
    return {k: v for k, v in record.items() if v not in (None, "", [])}, warnings


def _passage_text(passage: BioCPassage) -> str:
    if passage.text:
        return passage.text
    return " ".join(s.text for s in passage.sentences if s.text)


def _front_metadata(infons: dict[str, str], record: dict[str, Any]) -> None:
    """PMC BioC puts the article's ids, year, journal and keywords in the infons of its front passage."""
    for key, field in (("article-id_pmid", "pmid"), ("article-id_pmc", "pmcid"), ("article-id_doi", "doi"),
                       ("year", "year"), ("source", "journal")):
        if infons.get(key) and not record.get(field):
            record[field] = infons[key]
    if infons.get("kwd") and "keywords" not in record:
        record["keywords"] = [k.strip() for k in re.split(r"[;,]|\s{2,}", infons["kwd"]) if k.strip()]


def _genes(document: BioCDocument) -> tuple[list[dict[str, Any]], dict[str, str], list[tuple[str, str]]]:
    """The document's gold genes from its Gene annotations, their NCBI ids, and the annotations dropped."""
    warnings: list[tuple[str, str]] = []
    groups: dict[str, dict[str, Any]] = {}
    for annotation, spans in _annotations(document):
        infons = {str(k).lower(): ("" if v is None else str(v)) for k, v in (annotation.infons or {}).items()}
        if infons.get("type", "").lower() not in GENE_TYPES:
            continue
        part = f"annotation {annotation.id}" if annotation.id else f"annotation {annotation.text!r}"
        problem = _offset_problem(annotation, spans)
        if problem:
            warnings.append((part, f"gene annotation dropped: {problem}"))
            continue
        ids = [i.strip().removeprefix("NCBIGene:") for i in re.split(r"[;,|]", _identifier(infons))]
        ids = [i for i in ids if i and i not in ("-", "None", "null")]
        for key in ids or [f"text:{annotation.text.lower()}"]:
            group = groups.setdefault(key, {"id": key if ids else "", "names": [], "official": ""})
            group["names"].append(annotation.text)
            if infons.get("name") and not group["official"]:
                group["official"] = infons["name"]
    genes: dict[str, dict[str, Any]] = {}
    gene_ids: dict[str, str] = {}
    for key, group in groups.items():
        symbol = _symbol(group)
        if symbol is None:
            warnings.append((f"gene {group['names'][0]!r}", "gene dropped: no mention is symbol-like and it has no id"))
            continue
        gene = genes.setdefault(symbol, {"symbol": symbol, "aliases": []})
        for name in dict.fromkeys(group["names"]):
            if name != symbol and name not in gene["aliases"]:
                gene["aliases"].append(name)
        if group["id"]:
            gene_ids[symbol] = ";".join(filter(None, [gene_ids.get(symbol), group["id"]]))
    return list(genes.values()), gene_ids, warnings


def _identifier(infons: dict[str, str]) -> str:
    return next((infons[k] for k in ID_KEYS if infons.get(k)), "")


def _symbol(group: dict[str, Any]) -> str | None:
    if group["official"] and _is_symbol(group["official"]):
        return group["official"]
    names = group["names"]
    shaped = [n for n in names if _is_symbol(n)]
    if shaped:
        return max(dict.fromkeys(shaped), key=shaped.count)  # the commonest, the first on ties
    return f"NCBIGene:{group['id']}" if group["id"] and _is_symbol(f"NCBIGene:{group['id']}") else None


def _is_symbol(name: str) -> bool:
    """Whether a name can be a gene's symbol (GeneAnnotation's rule: one word of letters, digits, - . / :)."""
    try:
        GeneAnnotation(symbol=name)
    except ValidationError:
        return False
    return True


def _annotations(document: BioCDocument) -> Iterator[tuple[BioCAnnotation, list[tuple[int, str]]]]:
    """Every annotation with the texts (offset, text) its locations may point into."""
    spans: list[tuple[int, str]] = []
    for passage in document.passages:
        spans.append((passage.offset or 0, passage.text or ""))
        for annotation in passage.annotations:
            yield annotation, [(passage.offset or 0, passage.text or "")]
        for sentence in passage.sentences:
            spans.append((sentence.offset or 0, sentence.text or ""))
            for annotation in sentence.annotations:
                yield annotation, [(sentence.offset or 0, sentence.text or "")]
    for annotation in document.annotations:
        yield annotation, spans


def _offset_problem(annotation: BioCAnnotation, spans: list[tuple[int, str]]) -> str:
    """Why the annotation's locations do not hold its text ('' when they do, or when it has none)."""
    text = annotation.text or ""
    if not text.strip():
        return "no text"
    if not annotation.locations:
        return ""
    pieces = []
    for location in annotation.locations:
        start, end = location.offset, location.offset + location.length
        holder = next(((o, t) for o, t in spans if o <= start and end <= o + len(t)), None)
        if holder is None:
            return f"offsets {start}-{end} of {text!r} fall outside the passage text"
        pieces.append(holder[1][start - holder[0]:end - holder[0]])
    found = " ".join(pieces) if len(pieces) > 1 else pieces[0]
    if found != text and " ".join(found.split()) != " ".join(text.split()):
        first = annotation.locations[0]
        return (f"text {text!r} does not match offsets {first.offset}-{first.offset + first.length} "
                f"(the passage has {found!r} there)")
    return ""
