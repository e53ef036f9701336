"""Who this controller is to its agents: one identity per live controller process, kept across restarts.

An agent keeps a dropped link's jobs for its lease and lets the same controller reattach
(agent/lease.py). "The same controller" must mean this process or its restart, never another one
running beside it: Claude Desktop's server and a CLI run from a terminal, two desktop windows,
Claude Code beside Desktop. So each role (serve, cli) has numbered slots beside the audit log, and
a process holds its slot's lock for its lifetime: a restart finds its slot free again and gets the
same key, a process started beside it finds the slot held and takes the next one. The key sent to
a host also names the inventory host, so one machine under two names has two agents.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Identity:
    key: str  # this controller instance: base id, role and slot
    slot: str  # "serve-0": also names this controller's job registry
    _lock_fd: int | None = field(default=None, repr=False)

    def host_key(self, host: str) -> str:
        """What hello sends to `host`: this controller and that inventory name (hex, as agents accept)."""
        return hashlib.sha256(f"{self.key}:{host}".encode()).hexdigest()[:16]

    def release(self) -> None:
        """Give the slot up (a later controller of this role may take it and its jobs)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None


def claim(base: str, role: str, directory: Path) -> Identity:
    """The first free slot of `role` in `directory`, locked until release() or this process ends."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for number in itertools.count():
        slot = f"{role}-{number}"
        fd = os.open(directory / f"{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        key = hashlib.sha256(f"{base}:{slot}".encode()).hexdigest()[:16]
        return Identity(key, slot, fd)
    raise AssertionError("unreachable")
