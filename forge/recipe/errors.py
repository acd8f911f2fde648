"""Errors are values with a place: file, line, column, dotted path, message and hint.

Every stage before execute reports bad input as RecipeIssue values collected into one RecipeError; the
CLI alone turns them into text (`FILE:LINE:COL: path: message`) and exit code 2.
"""
from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import Any, Iterable


@dataclass(frozen=True)
class Position:
    file: str
    line: int
    column: int


@dataclass(frozen=True)
class RecipeIssue:
    file: str
    line: int
    column: int
    path: str
    message: str
    hint: str = ""

    def format(self) -> str:
        text = f"{self.file}:{self.line}:{self.column}: {self.path or '<recipe>'}: {self.message}"
        return one_line(f"{text}; {self.hint}" if self.hint else text)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RecipeError(Exception):
    """One or more problems with a recipe, each with its place."""

    def __init__(self, issues: Iterable[RecipeIssue]) -> None:
        self.issues = sorted(set(issues), key=lambda i: (i.file, i.line, i.column, i.path, i.message))
        super().__init__("\n".join(i.format() for i in self.issues))


# Characters that end a line for a terminal or for str.splitlines: shown escaped, so that one problem stays one
# line even when a key or value read from the file holds them.
_LINE_BREAKS = {ord(c): repr(c)[1:-1] for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def one_line(text: str) -> str:
    """The text with its line breaks escaped (`\\n`)."""
    return text.translate(_LINE_BREAKS)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A hint naming the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else ""


def dotted(path: tuple[Any, ...]) -> str:
    """lora.r, data.sources.0.path; a key that is empty, holds a dot or space, or is not printable is quoted."""
    return ".".join(repr(p) if isinstance(p, str) and _odd_key(p) else str(p) for p in path)


def _odd_key(key: str) -> bool:
    return not key or not key.isprintable() or any(c.isspace() or c == "." for c in key)
