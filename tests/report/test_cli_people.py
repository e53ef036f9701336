"""`crashfleet triage|trace|report` for the engineer at a terminal, on the rig and the dump fleet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.dumps.conftest import DumpFleet
from tests.rig import Rig


def crashfleet(rig: Rig | None, tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRASHFLEET_HOST_DEADLINE": "120", "XDG_STATE_HOME": str(tmp_path / "state")}
    if rig is not None:
        env["CRASHFLEET_SSH_KNOWN_HOSTS"] = str(rig.known_hosts)
    return subprocess.run(
        [sys.executable, "-m", "crashfleet.controller", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_trace_prints_merged_maps(rig: Rig, tmp_path: Path) -> None:
    out = crashfleet(rig, tmp_path, "trace", "-i", str(rig.inventory), "web01:web02", "runqlat", "-d", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("2 host(s) in ") and "2 ok" in out.stdout, out.stdout
    assert " on web[01-02]: " in out.stdout, out.stdout  # a map merged over both hosts


def test_triage_groups_hosts_by_crash(rig: Rig, dump_fleet: DumpFleet, tmp_path: Path) -> None:
    out = crashfleet(rig, tmp_path, "triage", "-i", str(dump_fleet.inventory), "web01:web02:web04")
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("3 crashed host(s) in 2 group(s)"), out.stdout
    assert any(line.startswith("web[01-02]") and "sysrq-triggered crash" in line for line in lines), out.stdout
    assert any(line.startswith("web04") and "Attempted to kill init" in line for line in lines), out.stdout


def test_triage_of_kernel_logs_people_have(tmp_path: Path) -> None:
    """`triage --log`: console captures and saved dmesg files, grouped as hosts are; every file in
    exactly one group, or listed as unreadable with the reason."""
    logs = Path(__file__).parents[1] / "unit" / "data" / "oops"
    files = [logs / "softlockup_a.log", logs / "softlockup_b.log", logs / "null_deref.log"]
    copy = tmp_path / "console-web07.log"
    copy.write_bytes((logs / "softlockup_a.log").read_bytes())
    (tmp_path / "empty.log").write_text("[    0.000000] Linux version 6.1.0\n[    1.0] all is well\n")
    argv = [*map(str, files), str(copy), str(tmp_path / "empty.log"), str(tmp_path / "missing.log")]
    out = crashfleet(None, tmp_path, "triage", "--json", "--log", *argv)
    assert out.returncode == 1, out.stdout + out.stderr  # one file was unreadable
    answer = json.loads(out.stdout)
    titles = {g["title"]: sorted(g["files"]) for g in answer["groups"]}
    assert titles == {
        "BUG: soft lockup in cfx_spin_wait [cfx_spin]": sorted([str(files[0]), str(copy)]),
        "BUG: soft lockup in cfx_poll_hw [cfx_poll]": [str(files[1])],
        "BUG: kernel NULL pointer dereference in cfx_flush_ring [cfx_ring]": [str(files[2])],
        None: [str(tmp_path / "empty.log")],
    }, titles
    assert answer["groups"][0]["culprit"] == "cfx_spin_wait" and answer["groups"][0]["modules"] == ["cfx_spin"]
    assert answer["unreadable"] == [{"file": str(tmp_path / "missing.log"), "why": "No such file or directory"}]
    table = crashfleet(None, tmp_path, "triage", "--log", *map(str, files))
    assert table.returncode == 0 and "cfx_poll_hw" in table.stdout, table.stdout + table.stderr


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
