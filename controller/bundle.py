"""The agent zipapp: built in memory, byte-for-byte reproducible, named by its hash."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from crashfleet.agent import buildinfo

VENDORED = ("pexpect", "ptyprocess")  # pure Python; crash is driven through pexpect
MAIN = b'''import sys
if sys.version_info < (3, 8):
    sys.stderr.write("crashfleet agent needs Python >= 3.8, this is %s\\n" % sys.version.split()[0])
    sys.exit(3)
from crashfleet.agent.main import main
sys.exit(main())
'''
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Bundle:
    data: bytes
    build: str
    sha256: str  # what the host's launcher checks before it runs the file (agent/launcher.py)

    @property
    def filename(self) -> str:
        return f"crashfleet-agent-{self.build}.pyz"


@functools.cache
def agent_bundle() -> Bundle:
    """The zipapp for this controller's agent sources (cached per process)."""
    members = list(_members())
    build = buildinfo.hash_members(members)
    members.append((f"crashfleet/agent/{buildinfo.BUILD_FILE}", build.encode()))
    data = _zip(members)
    return Bundle(data, build, hashlib.sha256(data).hexdigest())


def write_bundle(path: Path) -> Bundle:
    """Write the zipapp atomically (temp file, then rename)."""
    bundle = agent_bundle()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(bundle.data)
    tmp.chmod(0o755)
    tmp.replace(path)
    return bundle


def _members() -> list[tuple[str, bytes]]:
    agent_dir = Path(buildinfo.__file__).parent
    members = list(buildinfo.source_members(str(agent_dir)))
    members += [("crashfleet/__init__.py", b""), ("__main__.py", MAIN)]
    for package in VENDORED:
        members += _package_members(package)
    return members


def _package_members(package: str) -> list[tuple[str, bytes]]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"cannot vendor {package}: install it in the controller's environment")
    root = Path(list(spec.submodule_search_locations)[0])
    return [(f"{package}/{path.relative_to(root).as_posix()}", path.read_bytes())
            for path in sorted(root.rglob("*.py")) if "__pycache__" not in path.parts]


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    buffer.write(b"#!/usr/bin/env python3\n")  # as zipapp does: runnable as ./crashfleet-agent.pyz
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(members):
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()

