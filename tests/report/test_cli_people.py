"""`crashfleet triage|trace|report` for the engineer at a terminal, on the rig and the dump fleet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.dumps.conftest import DumpFleet
from tests.rig import Rig


def crashfleet(rig: Rig, tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CRASHFLEET_SSH_KNOWN_HOSTS": str(rig.known_hosts),
        "CRASHFLEET_HOST_DEADLINE": "120",
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    return subprocess.run(
        [sys.executable, "-m", "crashfleet.controller", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_trace_prints_merged_maps(rig: Rig, tmp_path: Path) -> None:
    out = crashfleet(rig, tmp_path, "trace", "-i", str(rig.inventory), "web01:web02", "runqlat", "-d", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("2 host(s) in ") and "2 ok" in out.stdout, out.stdout
    assert " on web[01-02]: " in out.stdout, out.stdout  # a map merged over both hosts


def test_triage_groups_hosts_by_panic(rig: Rig, dump_fleet: DumpFleet, tmp_path: Path) -> None:
    out = crashfleet(rig, tmp_path, "triage", "-i", str(dump_fleet.inventory), "web01:web02:web04")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("3 host(s) with a dump in 2 group(s)"), out.stdout
    assert any(line.startswith("web[01-02]") and "sysrq" in line for line in lines), out.stdout
    assert any(line.startswith("web04") for line in lines), out.stdout


def test_report_lists_ids_it_cannot_find_and_still_writes(rig: Rig, tmp_path: Path) -> None:
    target = tmp_path / "r.html"
    out = crashfleet(
        rig,
        tmp_path,
        "report",
        "-i",
        str(rig.inventory),
        "-t",
        "CLI report",
        "-o",
        str(target),
        "web01:0123456789",
        "J7",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"wrote {target}" in out.stdout and "2 id(s) not found" in out.stdout, out.stdout
    assert "not included: J7: unknown job_id" in out.stderr, out.stderr
    assert "<h2>Not included</h2>" in target.read_text()
