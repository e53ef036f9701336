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
    """The agent's files (sources, sub-packages, data such as .bt tools), named as in the zipapp."""
    for root, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))  # no tool caches
        for name in sorted(files):
            if name.endswith((".pyc", ".pyo")) or name == BUILD_FILE:
                continue
            path = os.path.join(root, name)
            relative = os.path.relpath(path, package_dir).replace(os.sep, "/")
            with open(path, "rb") as handle:
                yield "crashfleet/agent/" + relative, handle.read()


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
