"""The agent's own trail of what it refused: one JSON line per refusal, in its base dir.

The agent is the boundary even for clients other than crashfleet's controller, so it keeps
this itself: time, method, error kind, the rule that refused (an AgentError's `rule`), the
message, and a sha256 of the params (not the params: they may hold code or secrets). The
controller's audit log carries the same digest for the same call. Appended with O_APPEND;
past MAX_BYTES the file is rotated once (to .1), so a flood of refusals cannot fill the disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from typing import Any

from . import protocol
from .errors import AgentError

FILENAME = "audit.jsonl"
MAX_BYTES = 8 << 20
REFUSAL_KINDS = (
    protocol.POLICY_DENIED,
    protocol.QUOTA_EXCEEDED,
    protocol.REFUSED,
    protocol.UNSAFE_PROGRAM,
    protocol.UNSAFE_DIR,
    protocol.TOO_MANY_SESSIONS,
)


def is_refusal(error: AgentError) -> bool:
    """A rule said no (errors about bad input or missing things are not refusals)."""
    return bool(error.extra.get("rule")) or error.kind in REFUSAL_KINDS


def params_digest(params: Any) -> str:
    """sha256 of the params as canonical JSON (sorted keys, no spaces): the controller computes the same."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class RefusalLog:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def record(self, method: str, params: Any, error: AgentError) -> None:
        entry = {
            "ts": round(time.time(), 3),
            "method": method,
            "kind": error.kind,
            "rule": error.extra.get("rule"),
            "message": error.message,
            "params_sha256": params_digest(params),
        }
        line = (json.dumps(entry, sort_keys=True, default=str) + "\n").encode()
        with self._lock:
            try:
                self._rotate()
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                try:
                    os.write(fd, line)
                finally:
                    os.close(fd)
            except OSError as exc:  # the refusal stands even when its record cannot be written
                sys.stderr.write("crashfleet-agent: cannot append to %s: %s\n" % (self.path, exc))

    def _rotate(self) -> None:
        try:
            if os.lstat(self.path).st_size >= MAX_BYTES:
                os.replace(self.path, self.path + ".1")
        except FileNotFoundError:
            pass
