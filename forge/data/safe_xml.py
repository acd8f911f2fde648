"""XML for the paper readers (JATS, PubMed, BioC), parsed so that a hostile or broken file is a bad record:
entity declarations (the billion-laughs bomb) and external entities are refused by defusedxml before anything
is expanded or fetched, and a file is streamed element by element so memory stays flat on a baseline file.
"""
from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import iterparse

from forge.data.detect import GZIP_MAGIC



class XmlProblem(Exception):
    """The file stops being readable XML here: `where` is "line L, column C" or "file", `reason` says why."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason


def open_binary(file: Path) -> IO[bytes]:
    """The file's bytes, gunzipped on the fly when it is gzip (by content, whatever its name)."""
    with file.open("rb") as probe:
        gzipped = probe.read(2) == GZIP_MAGIC
    return Gunzip(file.open("rb")) if gzipped else file.open("rb")  # type: ignore[return-value]


class Gunzip(io.RawIOBase):
    """A gzip stream (of one or more members) read in order, which hands over every byte it could
    decompress before it raises EOFError for a file cut short: gzip.GzipFile raises at once, losing the
    citations before the cut."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self.raw, self.inflate = raw, zlib.decompressobj(wbits=31)
        self.buffer, self.position, self.ended, self.truncated = b"", 0, False, False

    def readable(self) -> bool:
        return True

    def readline(self, size: int | None = -1) -> bytes:
        """One line (with its newline), without reading the stream byte by byte as io.RawIOBase would."""
        while not self.ended and self.buffer.find(b"\n", self.position) < 0:
            self._fill()
        newline = self.buffer.find(b"\n", self.position)
        return self.read(newline + 1 - self.position if newline >= 0 else -1)

    def read(self, size: int = -1) -> bytes:
        while not self.ended and (size < 0 or len(self.buffer) - self.position < size):
            self._fill()
        if self.position >= len(self.buffer) and self.truncated:
            raise EOFError("the gzip stream ends early (file truncated?)")
        end = len(self.buffer) if size < 0 else self.position + size
        out = self.buffer[self.position:end]
        self.position += len(out)
        return out

    def _fill(self) -> None:
        data = self.raw.read(1 << 16)
        if not data:
            self.ended, self.truncated = True, not self.inflate.eof
            return
        pieces = [self.buffer[self.position:]]  # what was not read yet, then the new bytes
        while data:
            if self.inflate.eof:  # the next member of a multi-member file
                self.inflate = zlib.decompressobj(wbits=31)
            pieces.append(self.inflate.decompress(data))
            data = self.inflate.unused_data if self.inflate.eof else b""
        self.buffer, self.position = b"".join(pieces), 0

    def close(self) -> None:
        self.raw.close()
        super().close()


def local_name(tag: object) -> str:
    """An element's name without its namespace (`{ns}article` -> `article`); comments and PIs give ''."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def iter_elements(file: Path, names: frozenset[str] | set[str]) -> Iterator[tuple[Element, str]]:
    """Each outermost element named one of `names` (and the root element's name), complete, in file order.

    The element is cleared once the caller moves on, and the root forgets it, so a 1 GB file of citations
    holds one citation in memory at a time. A problem (broken or truncated XML, an entity declaration, an
    external entity, a gzip stream cut short) raises XmlProblem after the elements before it were given.
    """
    handle = open_binary(file)
    depth, root, inside = 0, None, 0
    try:
        for event, element in iterparse(handle, events=("start", "end"), forbid_dtd=False,
                                        forbid_entities=True, forbid_external=True):
            name = local_name(element.tag)
            if event == "start":
                depth += 1
                if root is None:
                    root = element
                if name in names:
                    inside += 1
                continue
            depth -= 1
            if name in names:
                inside -= 1
                if inside == 0:
                    yield element, local_name(root.tag)
                    element.clear()
                    if root is not element:
                        root.clear()  # the root keeps no reference to finished elements
    except ParseError as error:
        line, column = getattr(error, "position", (0, 0))
        message = str(error).split(":", 1)[0]
        if "no element found" in message and root is not None:
            message = "file ends before the XML does (truncated?)"
        elif message == "undefined entity":  # &nbsp; and kin are declared by a DTD, which is never loaded
            message = "undefined entity (a named entity such as &nbsp; that the file does not declare)"
        raise XmlProblem(f"line {line}, column {column + 1}", message) from None
    except DefusedXmlException as error:
        raise XmlProblem("file", f"XML with {_defused_reason(error)} is not read (entity expansion and "
                                 "external entities are switched off)") from None
    except (EOFError, OSError, zlib.error) as error:  # a gzip stream cut short or damaged, a read error
        raise XmlProblem("file", f"cannot read: {error}") from None
    finally:
        handle.close()
    if root is None:
        raise XmlProblem("file", "no XML element in the file")


def _defused_reason(error: DefusedXmlException) -> str:
    kind = type(error).__name__
    if kind == "EntitiesForbidden":
        return f"an entity declaration ({getattr(error, 'name', '?')})"
    if kind == "ExternalReferenceForbidden":
        return f"an external reference ({getattr(error, 'sysid', '') or '?'})"
    if kind == "DTDForbidden":
        return "a DTD"
    return kind


def element_text(element: Element | None, skip: frozenset[str] = frozenset()) -> str:
    """The element's text with its inline children, whitespace collapsed; children named in `skip` (figures,
    formulas, nested sections) are left out but the text after them is kept."""
    if element is None:
        return ""
    parts: list[str] = []
    _collect(element, skip, parts)
    return " ".join("".join(parts).split())


def _collect(element: Element, skip: frozenset[str], parts: list[str]) -> None:
    if element.text:
        parts.append(element.text)
    for child in element:
        if local_name(child.tag) not in skip:
            _collect(child, skip, parts)
        elif parts and not parts[-1].endswith(" "):
            parts.append(" ")
        if child.tail:
            parts.append(child.tail)


def children(element: Element | None, name: str) -> list[Element]:
    """The direct children with this local name."""
    return [] if element is None else [c for c in element if local_name(c.tag) == name]


def child(element: Element | None, *path: str) -> Element | None:
    """The first descendant along a path of local names (`child(article, "front", "article-meta")`)."""
    node = element
    for name in path:
        node = next((c for c in node if local_name(c.tag) == name), None) if node is not None else None
    return node

