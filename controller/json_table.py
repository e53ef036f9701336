"""A list of records kept in one private JSON file (the job registry, the task table): written
whole to a temporary file then renamed, so a reader sees the old table or the new, never half."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def save(path: Path, rows: list[dict[str, Any]], what: str) -> None:
    """Write the table (mode 0600: it may hold bearer handles); a failure is logged, not raised."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp.touch(mode=0o600)
        tmp.write_text(json.dumps(rows, default=str))
        tmp.replace(path)
    except OSError as exc:
        log.warning("cannot save the %s to %s: %s", what, path, exc)


def load(path: Path, what: str) -> list[dict[str, Any]]:
    """The table's rows; none when it is missing or unreadable (said in the log)."""
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("ignoring the %s %s: %s", what, path, exc)
        return []
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        log.warning("ignoring the %s %s: not a list of records", what, path)
        return []
    return rows
