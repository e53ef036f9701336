"""What an attacker's test needs: canary paths that must never appear, a secret that must never
come back, and a way to wait for a condition without fixed sleeps."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path

CANARY_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/root")


def secret_file(directory: Path) -> tuple[Path, str]:
    """A root-only (0600) file with unique content: the content must never show up anywhere."""
    text = "crashfleet-secret-" + secrets.token_hex(16)
    path = directory / ("crashfleet-secret-" + secrets.token_hex(4))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (text + "\n").encode())
    os.close(fd)
    return path, text


class Canaries:
    """Unique file names an attack would create; assert_none() checks none exists anywhere likely."""

    def __init__(self) -> None:
        self.tag = "crashfleet-canary-" + secrets.token_hex(4)
        self.names: list[str] = []

    def name(self, what: str) -> str:
        name = f"{self.tag}-{what}"
        if name not in self.names:
            self.names.append(name)
        return name

    def path(self, what: str, directory: str = "/tmp") -> str:
        return os.path.join(directory, self.name(what))

    def found(self, names: Iterable[str] | None = None, dirs: Iterable[str] = CANARY_DIRS) -> list[str]:
        return [os.path.join(d, n) for d in dirs for n in (names or self.names) if os.path.lexists(os.path.join(d, n))]

    def assert_none(self, names: Iterable[str] | None = None, dirs: Iterable[str] = CANARY_DIRS) -> None:
        found = self.found(names, dirs)
        assert not found, f"an attack wrote files: {found}"

    def remove(self) -> None:
        for path in self.found():
            os.unlink(path)


def wait_until(predicate: Callable[[], object], timeout: float) -> bool:
    """Poll a condition (every 50 ms) until it holds or the timeout passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
