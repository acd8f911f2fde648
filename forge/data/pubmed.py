"""The `pubmed_xml` reader: PubMed/MEDLINE XML (`PubmedArticleSet`, as efetch and the annual baseline and
update files give it, gzipped or not), one paper per citation.

The file is streamed (iterparse, each citation cleared once read), so memory stays flat however large the
file is. MedlineCitation gives the PMID, Article the title, the abstract (labelled parts kept:
"BACKGROUND: ..."), the journal, the year (PubDate, else MedlineDate's first year, else ArticleDate), the
authors and the DOI; MeshHeadingList the MeSH terms (metadata `mesh_terms`); KeywordList the keywords.
Book citations (PubmedBookArticle) are read the same way from BookDocument; DeleteCitation lists are not papers.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

from forge.data.readers import BadRecord, RawItem
from forge.data.safe_xml import XmlProblem, child, children, element_text, iter_elements
from forge.recipe.schema import DataSource

CITATIONS = frozenset({"PubmedArticle", "PubmedBookArticle"})
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d|2100)\b")


def read_pubmed(file: Path, source: DataSource) -> Iterator[RawItem]:
    """Every citation of the file as a record; a truncated file keeps the citations before the break."""
    name, count = str(file), 0
    try:
        for citation, _ in iter_elements(file, CITATIONS):
            count += 1
            record = pubmed_record(citation)
            where = f"{citation.tag.rsplit('}', 1)[-1]} {count}" + (f" (PMID {record['id']})" if "id" in record else "")
            yield name, where, f"{file.name.split('.')[0]}-{count}", record
    except XmlProblem as problem:
        yield name, problem.where, file.stem, BadRecord(name, problem.where, problem.reason)
        return
    if count == 0:
        yield name, "file", file.stem, BadRecord(name, "file", "no <PubmedArticle> element (not PubMed XML?)")


def pubmed_record(citation: Element) -> dict[str, Any]:
    """One PubmedArticle (or PubmedBookArticle) element as a paper record."""
    medline = child(citation, "MedlineCitation")
    book = child(citation, "BookDocument")
    base = medline if medline is not None else book
    article = child(medline, "Article") if medline is not None else book
    journal = child(article, "Journal")
    title = element_text(child(article, "ArticleTitle")) or element_text(child(article, "VernacularTitle")) \
        or element_text(child(book, "Book", "BookTitle"))
    record: dict[str, Any] = {
        "id": element_text(child(base, "PMID")),
        "title": title,
        "abstract": _abstract(child(article, "Abstract")),
        "journal": element_text(child(journal, "Title")) or element_text(child(journal, "ISOAbbreviation")),
        "year": _year(article, journal),
        "authors": _authors(child(article, "AuthorList")),
        "doi": _doi(citation, article),
        "keywords": [element_text(k) for group in children(base, "KeywordList") for k in children(group, "Keyword")
                     if element_text(k)],
        "mesh_terms": [_mesh(h) for h in children(child(medline, "MeshHeadingList"), "MeshHeading")],
    }
    pmc = [element_text(e) for e in children(child(citation, "PubmedData", "ArticleIdList"), "ArticleId")
           if e.get("IdType") == "pmc"]
    if pmc:
        record["pmcid"] = pmc[0]
    return {k: v for k, v in record.items() if v not in (None, "", [])}


def _abstract(abstract: Element | None) -> str:
    parts = []
    for part in children(abstract, "AbstractText"):
        text = element_text(part)
        label = part.get("Label")
        parts.append(f"{label}: {text}" if label and text else text)
    return "\n".join(p for p in parts if p)


def _year(article: Element | None, journal: Element | None) -> int | None:
    date = child(journal, "JournalIssue", "PubDate")
    for candidate in (element_text(child(date, "Year")), element_text(child(date, "MedlineDate")),
                      element_text(child(article, "ArticleDate", "Year")),
                      element_text(child(article, "Book", "PubDate", "Year"))):  # a book citation
        match = _YEAR.search(candidate)
        if match:
            return int(match.group(1))
    return None


def _authors(authors: Element | None) -> list[str]:
    names = []
    for author in children(authors, "Author"):
        full = " ".join(filter(None, [element_text(child(author, "ForeName")) or element_text(child(author, "Initials")),
                                      element_text(child(author, "LastName"))]))
        full = full or element_text(child(author, "CollectiveName"))
        if full:
            names.append(full)
    return names


def _doi(citation: Element, article: Element | None) -> str:
    for location in children(article, "ELocationID"):
        if location.get("EIdType") == "doi":
            return element_text(location)
    for identifier in children(child(citation, "PubmedData", "ArticleIdList"), "ArticleId"):
        if identifier.get("IdType") == "doi":
            return element_text(identifier)
    return ""


def _mesh(heading: Element) -> str:
    """A MeSH heading as its descriptor, with qualifiers after a slash: "Lung Neoplasms/genetics"."""
    names = [element_text(child(heading, "DescriptorName"))]
    names += [element_text(q) for q in children(heading, "QualifierName")]
    return "/".join(n for n in names if n)
