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


class AuditLog:
    def __init__(self, path: Path, who: str) -> None:
        self.path = path
        self.who = who
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    def record(
        self,
        host: str,
        method: str,
        params: dict[str, Any],
        outcome: str,
        result: Any = None,
        error: HostError | None = None,
    ) -> None:
        entry = {
            "ts": round(time.time(), 3),
            "who": self.who,
            "host": host,
            "method": method,
            "params": params,
            "outcome": outcome,
            "result_sha256": _digest(result),
        }
        if error is not None:
            entry |= {"kind": error.kind, "rule": error.rule, "params_sha256": params_digest(params)}
        line = json.dumps(entry, default=str, separators=(",", ":")) + "\n"
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as exc:  # a full disk must not fail the call it records
            log.warning("audit log write failed: %s", exc)


def _digest(result: Any) -> str | None:
    if result is None:
        return None
    if isinstance(result, dict) and isinstance(result.get("sha256"), str):
        return str(result["sha256"])  # the agent hashed the full output it stored
    return hashlib.sha256(json.dumps(result, default=str, sort_keys=True).encode()).hexdigest()
