"""Every call the controller makes on a host, appended as one JSON line."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any


class AuditLog:
    def __init__(self, path: Path, who: str) -> None:
        self.path = path
        self.who = who
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    def record(self, host: str, method: str, params: dict[str, Any], outcome: str,
               result: Any = None) -> None:
        entry = {"ts": round(time.time(), 3), "who": self.who, "host": host, "method": method,
                 "params": params, "outcome": outcome, "result_sha256": _digest(result)}
        line = json.dumps(entry, default=str, separators=(",", ":")) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def _digest(result: Any) -> str | None:
    if result is None:
        return None
    if isinstance(result, dict) and isinstance(result.get("sha256"), str):
        return str(result["sha256"])  # the agent hashed the full output it stored
    return hashlib.sha256(json.dumps(result, default=str, sort_keys=True).encode()).hexdigest()
