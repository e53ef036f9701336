"""mypy --strict over the three packages, as they import (crashfleet.*)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_strict_is_clean(tmp_path: Path) -> None:
    tree = tmp_path / "crashfleet"  # the installed layout, which the editable install hides from mypy
    tree.mkdir()
    for package in ("controller", "agent", "inventory"):
        (tree / package).symlink_to(ROOT / package)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "-p",
            "crashfleet.controller",
            "-p",
            "crashfleet.inventory",
            "-p",
            "crashfleet.agent",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env={**os.environ, "MYPYPATH": str(tmp_path)},
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
