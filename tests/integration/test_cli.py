"""`crashfleet hosts|check|run` for people at a terminal, against the rig."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from crashfleet.controller.render import ProgressBar
from tests.rig import Rig


def crashfleet(rig: Rig, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRASHFLEET_SSH_KNOWN_HOSTS": str(rig.known_hosts), "XDG_STATE_HOME": str(tmp_path / "state")}
    return subprocess.run(
        [sys.executable, "-m", "crashfleet.controller", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_check_prints_a_grouped_table(rig: Rig, tmp_path: Path) -> None:
    out = crashfleet(rig, tmp_path, "check", "-i", str(rig.inventory), "web")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("6 host(s) in ") and "6 ok" in out.stdout
    assert "== web[01-06] (6) ok" in out.stdout and "kernel" in out.stdout


def test_check_exit_status_and_errors_when_a_host_is_down(rig: Rig, tmp_path: Path) -> None:
    rig.stop_host("web06")
    try:
        out = crashfleet(rig, tmp_path, "check", "-i", str(rig.inventory), "web05:web06")
    finally:
        rig.start_host("web06")
    assert out.returncode == 1
    assert "1 unreachable" in out.stdout and "web06: unreachable" in out.stdout and "hint:" in out.stdout


def test_hosts_and_a_pattern_that_matches_nothing(rig: Rig, tmp_path: Path) -> None:
    out = crashfleet(rig, tmp_path, "hosts", "-i", str(rig.inventory), "~web0[1-2]")
    assert out.returncode == 0 and "2 host(s): web[01-02]" in out.stdout
    bad = crashfleet(rig, tmp_path, "hosts", "-i", str(rig.inventory), "nosuch")
    assert bad.returncode == 2 and "web" in bad.stderr


def test_run_groups_identical_output(rig: Rig, tmp_path: Path) -> None:
    out = crashfleet(rig, tmp_path, "run", "-i", str(rig.inventory), "web01:web02", "uname")
    assert out.returncode == 0, out.stderr
    assert "== web[01-02] (2) ok" in out.stdout and os.uname().release in out.stdout


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_progress_bar_draws_on_a_tty_and_clears() -> None:
    stream = Tty()
    bar = ProgressBar(stream)
    await bar(1, 4, "web01: ok")
    assert "[#######" in stream.getvalue() and "1/4 web01: ok" in stream.getvalue()
    await bar(4, 4, "web04: ok")
    assert stream.getvalue().endswith("\r")
    quiet = io.StringIO()
    await ProgressBar(quiet)(1, 4, "x")
    assert quiet.getvalue() == ""  # piped output stays clean
