"""The agent zipapp: reproducible, self-contained, stdlib-only and Python 3.8-clean."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

from crashfleet.controller import bundle as bundle_mod
from crashfleet.controller.bundle import agent_bundle, write_bundle

AGENT_DIR = Path(bundle_mod.__file__).parent.parent / "agent"


def test_build_is_reproducible_and_named_by_hash() -> None:
    bundle = agent_bundle()
    bundle_mod.agent_bundle.cache_clear()
    again = agent_bundle()
    assert again.data == bundle.data and again.build == bundle.build
    assert bundle.filename == f"crashfleet-agent-{bundle.build}.pyz"
    with zipfile.ZipFile(io.BytesIO(bundle.data)) as archive:
        names = set(archive.namelist())
    assert {
        "__main__.py",
        "crashfleet/agent/main.py",
        "crashfleet/agent/BUILD",
        "pexpect/__init__.py",
        "ptyprocess/__init__.py",
    } <= names


def test_zipapp_reports_its_build_with_the_system_python(tmp_path: Path) -> None:
    path = tmp_path / "agent.pyz"
    bundle = write_bundle(path)
    out = subprocess.run(
        ["/usr/bin/python3", "-I", str(path), "version"], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == bundle.build
    vendored = subprocess.run(
        [
            "/usr/bin/python3",
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(path)!r}); import pexpect, ptyprocess; print(pexpect.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert str(path) in vendored.stdout  # pexpect comes from inside the zipapp, not the system


def test_agent_imports_only_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"crashfleet", "pexpect", "ptyprocess", "__future__"}
    for source in AGENT_DIR.glob("*.py"):
        for line in source.read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] in ("import", "from") and not words[1].startswith("."):
                top = words[1].split(".")[0].rstrip(",")
                assert top in allowed, f"{source.name}: imports {top}"


def vermin_38(path: Path) -> subprocess.CompletedProcess[str]:
    """vermin computes the minimum Python version a source needs; fail above 3.8."""
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "vermin"),
            "--no-tips",
            "--violations",
            "-t=3.8-",
            "--eval-annotations",
            "--no-parse-comments",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_agent_sources_run_on_python_3_8(tmp_path: Path) -> None:
    out = vermin_38(AGENT_DIR)
    assert out.returncode == 0, out.stdout + out.stderr
    newer = tmp_path / "newer.py"
    newer.write_text("import zoneinfo\nCACHE: dict[str, int] = {}\n")
    assert vermin_38(newer).returncode != 0  # the check does catch 3.9+ code
