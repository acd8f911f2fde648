"""The error the data package raises for problems a user can fix: a bad record, an unreadable source, a
step that emptied the corpus. One line, with a hint; the CLI prints it without a traceback."""
from __future__ import annotations

from forge.errors import ForgeError


class DataError(ForgeError):
    """Papers could not be read, preprocessed or turned into examples; `message` says where and why."""
