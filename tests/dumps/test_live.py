"""crash_open(live=true): the running kernel through /proc/kcore, gated by policy live_kernel."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crashfleet.agent.dumps import live
from tests.dumps.agentproc import spawn


def test_live_kernel_is_refused_by_default(zipapp: Path, tmp_path: Path) -> None:
    (tmp_path / "dumps").mkdir()
    agent = spawn(zipapp, tmp_path, {}, tmp_path / "dumps")
    refused = agent.error("dumps.open", live=True)
    assert refused["data"]["kind"] == "policy_denied" and refused["data"]["rule"] == "policy.live_kernel"
    assert "live_kernel: false" in refused["message"] and "agent-policy.json" in refused["data"]["hint"]
    assert agent.result("dumps.sessions")["sessions"] == []
    assert agent.stop() == 0


@pytest.mark.skipif(os.path.exists(live.KCORE), reason="this host has /proc/kcore: the VM host test covers it")
def test_live_kernel_without_kcore_says_what_is_missing(zipapp: Path, tmp_path: Path) -> None:
    (tmp_path / "dumps").mkdir()
    agent = spawn(zipapp, tmp_path, {"live_kernel": True}, tmp_path / "dumps")
    refused = agent.error("dumps.open", live=True)
    assert refused["data"]["kind"] == "no_kcore" and "/proc/kcore does not exist" in refused["message"]
    assert "dumps_list" in refused["data"]["hint"]
    assert agent.result("dumps.sessions")["sessions"] == []
    assert agent.stop() == 0


def test_running_build_id_is_the_kernel_s() -> None:
    """/sys/kernel/notes parsed as the kernel's ELF notes: a 40-hex-digit GNU build id."""
    found = live.running_build_id()
    assert found is not None and len(found) == 40 and int(found, 16) >= 0
