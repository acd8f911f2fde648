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


def import_user_module(module: str, prefix: str) -> None:
    """Import the module a recipe names, so that it registers its entries: a dotted name, or the path of a .py
    file (imported once per process, under a name derived from its path, the same in every process, so that
    worker processes can unpickle what it defines). Raises FileNotFoundError, ImportError, or whatever the
    module raises; callers turn these into their one-line errors."""
    import hashlib
    import importlib
    import importlib.util
    import sys
    from pathlib import Path

    if not (module.endswith(".py") or "/" in module):
        importlib.import_module(module)
        return
    path = Path(module).expanduser().resolve()
    name = f"{prefix}_{path.stem}_{hashlib.blake2b(str(path).encode(), digest_size=4).hexdigest()}"
    if name in sys.modules:
        return
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python file")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        del sys.modules[name]
        raise
