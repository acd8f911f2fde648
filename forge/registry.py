"""Named, documented extension points (preprocessing steps, losses, eval tasks) that recipes refer to by name.

A registry entry is a name, a function, a pydantic model of its arguments and a one-line doc that the CLI
can list. Registries import nothing heavy: validating a recipe consults them without loading torch.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

F = TypeVar("F", bound=Callable[..., Any])


class NoArgs(BaseModel):
    """Arguments of an entry that takes none."""

    model_config = ConfigDict(extra="forbid", strict=True)


@dataclass(frozen=True)
class Entry:
    name: str
    function: Callable[..., Any]
    params: type[BaseModel]
    doc: str


class Registry(Generic[F]):
    """A mapping from names to entries, filled by the `register` decorator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, params: type[BaseModel] = NoArgs) -> Callable[[F], F]:
        def add(function: F) -> F:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = (function.__doc__ or "").strip().splitlines()
            self._entries[name] = Entry(name, function, params, doc[0] if doc else "")
            return function

        return add

    def get(self, name: str) -> Entry:
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def suggest(self, name: str) -> str | None:
        """The closest registered name, for a did-you-mean."""
        close = difflib.get_close_matches(name, self.names(), n=1, cutoff=0.6)
        return close[0] if close else None
