"""Which reader a file needs (`format: auto`): by what the file holds when that is unambiguous (a PDF
header, gzip, the root element of XML, BioC JSON's keys), else by its extension, else by its first
characters. A folder source lists every file and says why it skips the ones no reader takes.
"""
from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

GZIP_MAGIC = b"\x1f\x8b"

# Extensions that name one format; .xml, .nxml and .gz are decided by content.
SUFFIX_FORMATS = {".json": "demo_json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "text",
                  ".md": "markdown", ".markdown": "markdown", ".pdf": "pdf", ".nxml": "jats", ".bioc": "bioc"}
# The extensions each format reads when a folder source names the format.
FORMAT_SUFFIXES = {"demo_json": (".json",), "jsonl": (".jsonl", ".ndjson"), "text": (".txt",),
                   "markdown": (".md", ".markdown"), "jats": (".xml", ".nxml", ".gz"),
                   "pubmed_xml": (".xml", ".gz"), "bioc": (".xml", ".json", ".bioc", ".gz"), "pdf": (".pdf",)}
XML_ROOTS = {"article": "jats", "pmc-articleset": "jats", "PubmedArticleSet": "pubmed_xml",
             "PubmedArticle": "pubmed_xml", "MedlineCitationSet": "pubmed_xml", "collection": "bioc"}
HEAD_BYTES = 16384
_XML_NOISE = re.compile(rb"<\?.*?\?>|<!--.*?-->", re.DOTALL)
_DOCTYPE = re.compile(rb"<!DOCTYPE\s+([\w:.-]+)")
_ROOT = re.compile(rb"<([A-Za-z_][\w:.-]*)")
_BIOC_JSON = re.compile(r'"(passages|PubTator3?)"\s*:')


def head_bytes(file: Path) -> bytes:
    """The first bytes of the file, gunzipped when it is gzip (b"" when that cannot be read)."""
    with file.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    if head.startswith(GZIP_MAGIC):
        try:  # the start of the stream, even when the file was cut short
            return zlib.decompressobj(wbits=31).decompress(head, HEAD_BYTES)
        except zlib.error:
            return b""
    return head


def xml_root(head: bytes) -> str | None:
    """The root element's local name of XML that starts with `head`, or None when it is not XML."""
    text = _XML_NOISE.sub(b"", head.lstrip(b"\xef\xbb\xbf \t\r\n"))
    if not head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return None
    match = _DOCTYPE.search(text) or _ROOT.search(text)
    return match.group(1).decode("ascii", "replace").rsplit(":", 1)[-1] if match else None


def detect_format(file: Path) -> tuple[str | None, str]:
    """(format, '') for a file `auto` can read, or (None, why not)."""
    head = head_bytes(file)
    if head.startswith(b"%PDF-"):
        return "pdf", ""
    root = xml_root(head)
    if root in XML_ROOTS:
        return XML_ROOTS[root], ""
    name = file.name.lower()
    suffix = Path(name[:-3]).suffix if name.endswith(".gz") else file.suffix.lower()
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith(("{", "[")) and _BIOC_JSON.search(text):
        return "bioc", ""
    if suffix in SUFFIX_FORMATS:
        return SUFFIX_FORMATS[suffix], ""
    if root is not None:
        return None, f"unknown XML (root element <{root}>)"
    if text.startswith("["):
        return "demo_json", ""
    if text.startswith("{"):
        try:
            json.loads(text.split("\n", 1)[0])
            return "jsonl", ""
        except json.JSONDecodeError:
            return "demo_json", ""
    return None, "unknown format"
