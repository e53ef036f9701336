"""Errors raised while reading an inventory or resolving a host pattern."""

from __future__ import annotations

import os


class InventoryError(Exception):
    """An inventory could not be read.

    The message names the file and, when known, the line, so a user can go
    straight to the culprit; ``reason``, ``path`` and ``line`` keep the parts.
    """

    def __init__(
        self,
        reason: str,
        path: str | os.PathLike[str] | None = None,
        line: int | None = None,
    ) -> None:
        self.reason = reason
        self.path = None if path is None else os.fspath(path)
        self.line = line
        super().__init__(_locate(reason, self.path, line))

    def located(self, path: str | os.PathLike[str], line: int | None = None) -> InventoryError:
        """Return this error pinned to path/line, unless it already names a file."""
        if self.path is not None:
            return self
        return type(self)(self.reason, path, line)


class PatternError(InventoryError):
    """A host pattern is malformed or selects no host."""


def _locate(reason: str, path: str | None, line: int | None) -> str:
    if path is None:
        return reason
    if line is None:
        return f"{path}: {reason}"
    return f"{path}:{line}: {reason}"
