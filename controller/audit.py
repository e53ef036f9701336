"""Every call the controller makes on a host, appended as one JSON line.

A failed call also carries the error's kind and, when a rule refused it, the rule (e.g.
"quota.captures"), plus the sha256 of its params as the agent's own refusal log has it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from crashfleet.agent.audit import params_digest

from .errors import HostError

log = logging.getLogger(__name__)
# Built once: json.dumps with any option builds a new encoder at every call.
_LINE = json.JSONEncoder(default=str, separators=(",", ":"))
_SORTED = json.JSONEncoder(default=str, sort_keys=True)


class AuditLog:
    """Appends to its file through one descriptor kept open: an open() per call cost more than
    the rest of a warm call's bookkeeping. The path is looked at again every REOPEN seconds, so a
    log moved away (rotated) or deleted is followed to the new file."""

    REOPEN = 1.0

    def __init__(self, path: Path, who: str) -> None:
        self.path = path
        self.who = who
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd: int | None = None
        self._checked = 0.0

    def record(
        self,
        host: str,
        method: str,
        params: dict[str, Any],
        outcome: str,
        result: Any = None,
        error: HostError | None = None,
    ) -> None:
        now = time.time()
        entry = {
            "ts": round(now, 3),
            "who": self.who,
            "host": host,
            "method": method,
            "params": params,
            "outcome": outcome,
            "result_sha256": _digest(result),
        }
        if error is not None:
            entry |= {"kind": error.kind, "rule": error.rule, "params_sha256": params_digest(params)}
        line = _LINE.encode(entry) + "\n"
        try:
            os.write(self._descriptor(now), line.encode())
        except OSError as exc:  # a full disk must not fail the call it records
            log.warning("audit log write failed: %s", exc)
            self.close()

    def _descriptor(self, now: float) -> int:
        if self._fd is not None and now - self._checked < self.REOPEN:
            return self._fd
        self._checked = now
        if self._fd is not None and not _same_file(self._fd, self.path):
            self.close()
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), path.stat()
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _digest(result: Any) -> str | None:
    if result is None:
        return None
    if isinstance(result, dict) and isinstance(result.get("sha256"), str):
        return str(result["sha256"])  # the agent hashed the full output it stored
    return hashlib.sha256(_SORTED.encode(result).encode()).hexdigest()
