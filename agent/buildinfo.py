"""The agent's build hash: the controller's copy and the target's must match."""

from __future__ import annotations

import hashlib
import os
import pkgutil
from typing import Iterable, Optional, Tuple

BUILD_FILE = "BUILD"


def hash_members(members: Iterable[Tuple[str, bytes]]) -> str:
    """Hash (archive name, content) pairs in name order; first 16 hex digits."""
    digest = hashlib.sha256()
    for name, data in sorted(members):
        digest.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return digest.hexdigest()[:16]


def source_members(package_dir: str) -> Iterable[Tuple[str, bytes]]:
    """The agent's own .py files, named as they sit in the zipapp."""
    for name in sorted(os.listdir(package_dir)):
        if name.endswith(".py"):
            with open(os.path.join(package_dir, name), "rb") as handle:
                yield "crashfleet/agent/" + name, handle.read()


def build_hash() -> str:
    """The BUILD file embedded by the zipapp builder, else a hash of the sources."""
    embedded: Optional[bytes] = None
    try:
        embedded = pkgutil.get_data(__name__.rsplit(".", 1)[0], BUILD_FILE)
    except OSError:
        embedded = None
    if embedded:
        return embedded.decode().strip()
    return "dev-" + hash_members(source_members(os.path.dirname(os.path.abspath(__file__))))
