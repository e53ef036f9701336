"""The agent zipapp: built in memory, byte-for-byte reproducible, named by its hash."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from crashfleet.agent import buildinfo

VENDORED = ("pexpect", "ptyprocess")  # pure Python; crash is driven through pexpect
MAIN = b"""import sys
if sys.version_info < (3, 8):
    sys.stderr.write("crashfleet agent needs Python >= 3.8, this is %s\\n" % sys.version.split()[0])
    sys.exit(3)
from crashfleet.agent.main import main
sys.exit(main())
"""
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Bundle:
    data: bytes
    build: str
    sha256: str  # what the host's launcher checks before it runs the file (agent/launcher.py)

    @property
    def filename(self) -> str:
        return f"crashfleet-agent-{self.build}.pyz"


_adopted: list[Bundle] = []  # a worker process's: its front's build, not built again


def adopt(bundle: Bundle) -> None:
    """Use `bundle` (built by the front from the same sources) as this process's agent."""
    _adopted[:] = [bundle]
    agent_bundle.cache_clear()


@functools.cache
def agent_bundle() -> Bundle:
    """The zipapp for this controller's agent sources (cached per process)."""
    if _adopted:
        return _adopted[0]
    members = list(_members())
    members += _bytecode(members)
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


def _bytecode(members: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Unchecked-hash .pyc beside each .py: zipimport prefers them, which spares every host
    compiling the agent at each start (~0.1 s of CPU). A host whose Python has another magic
    number skips them and compiles the sources, as before.

    Compiled in a fresh interpreter: marshal marks objects by their reference counts, so the
    same code dumped in a busy process gives other bytes; a fresh one gives the same bytes
    every time, and so the zipapp's hash stays the same from one controller run to the next."""
    sources = [(name, data) for name, data in members if name.endswith(".py")]
    payload = b"".join(
        len(n.encode()).to_bytes(4, "big") + n.encode() + len(d).to_bytes(4, "big") + d for n, d in sources
    )
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _COMPILER], input=payload, capture_output=True, check=True, timeout=120
    ).stdout
    compiled, offset = [], 0
    for name, _ in sources:
        size = int.from_bytes(out[offset : offset + 4], "big")
        compiled.append((name + "c", out[offset + 4 : offset + 4 + size]))
        offset += 4 + size
    return compiled


_COMPILER = """
import sys, importlib.util, importlib._bootstrap_external as ext
data, i, out = sys.stdin.buffer.read(), 0, sys.stdout.buffer
while i < len(data):
    n = int.from_bytes(data[i:i+4], "big"); name = data[i+4:i+4+n].decode(); i += 4 + n
    m = int.from_bytes(data[i:i+4], "big"); src = data[i+4:i+4+m]; i += 4 + m
    pyc = bytes(ext._code_to_hash_pyc(compile(src, name, "exec", dont_inherit=True),
                                      importlib.util.source_hash(src), checked=False))
    out.write(len(pyc).to_bytes(4, "big") + pyc)
"""


def _package_members(package: str) -> list[tuple[str, bytes]]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"cannot vendor {package}: install it in the controller's environment")
    root = Path(next(iter(spec.submodule_search_locations)))
    return [
        (f"{package}/{path.relative_to(root).as_posix()}", path.read_bytes())
        for path in sorted(root.rglob("*.py"))
        if "__pycache__" not in path.parts
    ]


def _zip(members: list[tuple[str, bytes]]) -> bytes:
    # as zipapp does: runnable as ./crashfleet-agent.pyz
    return reproducible_zip(sorted(members), prefix=b"#!/usr/bin/env python3\n")


def reproducible_zip(members: list[tuple[str, bytes]], prefix: bytes = b"") -> bytes:
    """A zip whose bytes depend only on its members: fixed dates and modes, in the order given."""
    buffer = io.BytesIO()
    buffer.write(prefix)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()
