"""The agent's capture methods in-process: a full disk, a host without tcpdump."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crashfleet.agent import capture
from crashfleet.agent.errors import AgentError
from crashfleet.agent.jobs import JobManager
from crashfleet.agent.policy import DEFAULTS, Policy
from crashfleet.agent.service import Agent
from crashfleet.agent.store import Store
from tests.helpers import cmdline, pids_matching
from tests.rig import free_port


def tcpdump_pids() -> list[int]:
    return pids_matching("tcpdump")


def make_agent(base: Path, **policy: Any) -> Agent:
    store = Store(str(base / "store"))
    jobs = JobManager(store, lambda method, params: None, str(base))
    return Agent(str(base), store, jobs, Policy(dict(DEFAULTS, **policy), None))


@pytest.fixture
def tiny_disk() -> Iterator[Path]:
    """A 3 MB tmpfs where the capture user can reach it (pytest's tmp dirs are 0700)."""
    mount = Path(tempfile.mkdtemp(prefix="crashfleet-tiny-", dir="/var/tmp"))
    mount.chmod(0o711)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0711", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "big.bin").write_bytes(b"\0" * (8 << 20))
    port = free_port(1)
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.11", "--directory", str(tmp_path / "www")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        server.terminate()
        server.wait(5)


def test_full_disk_stops_the_capture_and_keeps_what_was_captured(tmp_path: Path, tiny_disk: Path, web: int) -> None:
    agent = make_agent(tmp_path, capture_dir=str(tiny_disk), capture_min_free_bytes=1 << 20)
    methods = agent.methods()
    started = methods["capture.start"](
        {"interface": "lo", "filter": f"tcp port {web}", "snaplen": 65535, "duration": 60}
    )
    time.sleep(0.5)
    url = f"http://127.0.0.11:{web}/big.bin"
    for _ in range(20):
        subprocess.run(["curl", "-s", "-o", "/dev/null", "--max-time", "5", url], check=False)
        status = methods["capture.status"]({"job_id": started["job_id"], "wait": 0.6})
        if status["state"] != "running":
            break
    assert status["state"] == "done" and status["stop_reason"].startswith("disk full"), (
        status,
        status.get("stderr_tail"),
    )
    assert status["files"] >= 1 and status["disk_bytes"] > 500_000
    summary = methods["capture.summary"]({"job_id": started["job_id"]})
    assert summary["packets"] > 0 and summary["stopped"].startswith("disk full")
    agent.jobs.shutdown()
    assert not [p for p in tcpdump_pids() if str(tiny_disk) in cmdline(p)]


def test_host_without_tcpdump_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capture, "SBIN_PATH", str(tmp_path))  # a PATH with no tcpdump on it
    with pytest.raises(AgentError) as caught:
        make_agent(tmp_path).methods()["capture.start"]({})
    assert caught.value.kind == "no_tcpdump" and "apt-get install tcpdump" in (caught.value.hint or "")


def test_modes_build_their_filters() -> None:
    assert capture.build_filter("auto", "443", None) == ("port 443", "port")
    assert capture.build_filter("auto", "10.0.0.5", None) == ("(host 10.0.0.5) or port 53", "host")
    assert capture.build_filter("web", None, None)[0] == "tcp and (port 80 or port 443 or port 8080 or port 8443)"
    assert capture.build_filter("auto", None, None)[1] == "diagnosis"
    assert capture.build_filter("diagnosis", "10.0.0.5", None)[0].endswith(" or host 10.0.0.5")
    assert capture.build_filter("host", "localhost", None)[0].startswith("(host 127.0.0.1")
    assert capture.build_filter("dns", None, "udp port 5353") == ("udp port 5353", "custom")
    for bad in (("host", "bad name;rm", None), ("nosuch", None, None), ("custom", None, None)):
        with pytest.raises(AgentError):
            capture.build_filter(*bad)
