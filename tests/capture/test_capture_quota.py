"""Capture quotas on a real agent (the zipapp, its own policy file): captures at once, and disk bytes in all.

Captures run on loopback with a filter nothing matches and a long duration, and are
cancelled at the end: no tcpdump may be left.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crashfleet.agent.capture import agent_capture_dir
from tests.agentproc import PolicyAgent
from tests.helpers import cmdline, pids_matching, wait_until

QUIET = {"interface": "lo", "filter": "udp port 9 and host 127.0.0.254", "duration": 300}


@pytest.fixture
def capture_dir() -> Iterator[Path]:
    """Where the capture user can reach (pytest's tmp dirs are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="crashfleet-quota-", dir="/var/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def tcpdumps(capture_dir: Path) -> list[int]:
    return [p for p in pids_matching("tcpdump") if str(capture_dir) in cmdline(p)]


def finish(agent: PolicyAgent, capture_dir: Path, jobs: list[str]) -> None:
    for job in jobs:
        assert agent.result("job.cancel", job_id=job)["state"] == "cancelled"
    assert agent.stop() == 0


async def test_a_capture_past_max_captures_is_refused_until_one_ends(tmp_path: Path, capture_dir: Path) -> None:
    agent = PolicyAgent(tmp_path, capture_dir=str(capture_dir), max_captures=2)
    try:
        jobs = [agent.result("capture.start", **QUIET)["job_id"] for _ in range(2)]
        assert len(tcpdumps(capture_dir)) == 2
        error = agent.error("capture.start", **QUIET)
        data = error["data"]
        assert (data["kind"], data["rule"]) == ("quota_exceeded", "quota.captures"), error
        assert "2 captures are running" in error["message"] and all(job in data["hint"] for job in jobs)
        assert len(tcpdumps(capture_dir)) == 2  # the refused one never started tcpdump
        [audited] = [json.loads(line) for line in (agent.dir / "audit.jsonl").read_text().splitlines()]
        assert (audited["method"], audited["rule"]) == ("capture.start", "quota.captures")
        agent.result("job.cancel", job_id=jobs.pop(0))
        jobs.append(agent.result("capture.start", **QUIET)["job_id"])  # a place was freed
        finish(agent, capture_dir, jobs)
    finally:
        agent.kill()
    assert await wait_until(lambda: not tcpdumps(capture_dir), 10)


def plant_kept(base: Path, name: str, size: int, mtime: int) -> Path:
    """A finished capture from earlier: a ring file of `size` bytes (sparse: no disk used)."""
    directory = base / name
    directory.mkdir(parents=True)
    with (directory / "ring.pcap0").open("wb") as handle:
        handle.truncate(size)
    os.utime(directory, (mtime, mtime))
    return directory


async def test_kept_captures_make_room_oldest_first_and_a_ring_that_cannot_fit_is_refused(
    tmp_path: Path, capture_dir: Path
) -> None:
    ring: dict[str, Any] = {**QUIET, "ring_bytes": 8_000_000}
    agent = PolicyAgent(tmp_path, capture_dir=str(capture_dir), max_captures=5, capture_total_bytes=20_000_000)
    base = Path(agent_capture_dir(str(capture_dir), str(agent.dir)))
    oldest, middle, newest = (plant_kept(base, f"{t}-kept", 5_000_000, t) for t in (100, 200, 300))
    try:
        jobs = [agent.result("capture.start", **ring)["job_id"]]  # 8 MB ring + 15 MB kept > 20 MB: one goes
        assert (oldest.exists(), middle.exists(), newest.exists()) == (False, True, True)
        jobs.append(agent.result("capture.start", **ring)["job_id"])  # 16 MB of rings leave 4 MB: both go
        assert not middle.exists() and not newest.exists()
        error = agent.error("capture.start", **ring)  # 24 MB of rings would not fit in 20
        assert (error["data"]["kind"], error["data"]["rule"]) == ("quota_exceeded", "quota.capture_bytes"), error
        assert "running captures hold 16000000 of this host's 20000000" in error["message"]
        assert len(tcpdumps(capture_dir)) == 2
        finish(agent, capture_dir, jobs)
    finally:
        agent.kill()
    assert await wait_until(lambda: not tcpdumps(capture_dir), 10)
