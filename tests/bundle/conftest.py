"""The official MCPB CLI (npm's @anthropic-ai/mcpb), installed once into a cache outside the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

MCPB_PACKAGE = "@anthropic-ai/mcpb@2.1.2"
CACHE = Path(os.environ.get("CRASHFLEET_TEST_CACHE", "/var/cache/crashfleet-tests"))


def run(argv: list[str], timeout: float = 300, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command, failing the test with its output when it fails."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def mcpb() -> Path:
    """The `mcpb` command, npm-installed into CACHE/npm on first use (pinned version)."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is missing: ./dev test installs nodejs/npm (apt-get install nodejs npm)")
    prefix = CACHE / "npm"
    binary = prefix / "node_modules" / ".bin" / "mcpb"
    wanted = MCPB_PACKAGE.rsplit("@", 1)[1]
    installed = prefix / "node_modules" / "@anthropic-ai" / "mcpb" / "package.json"
    if not binary.exists() or f'"version": "{wanted}"' not in installed.read_text():
        prefix.mkdir(parents=True, exist_ok=True)
        run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", MCPB_PACKAGE], timeout=600)
    return binary
