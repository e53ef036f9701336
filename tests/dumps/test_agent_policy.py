"""The host policy's dump keys, enforced by a real agent (the zipapp) started with --policy FILE.

The controller never chooses a host's policy file, so these tests speak JSON-RPC to
the agent process directly, on pipes, as the controller's link would.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crashfleet.controller.bundle import write_bundle
from tests.dumps.conftest import _link
from tests.dumps.fixture import Fixture

CALL_TIMEOUT = 300.0  # crash opens in seconds, but the machine is shared


def alive(pid: int | None) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except (OSError, TypeError):
        return False


class Agent:
    """One agent process; call() sends a request and returns its result or error."""

    def __init__(self, zipapp: Path, directory: Path, policy: Path, log: Path) -> None:
        self.log = open(log, "wb")
        self.proc = subprocess.Popen([sys.executable, str(zipapp), "serve", "--dir", str(directory),
                                      "--policy", str(policy)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log)
        self.ids = 0
        self.buffer = b""

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.ids += 1
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": self.ids, "method": method,
                                          "params": params}).encode() + b"\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + CALL_TIMEOUT
        while True:
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                assert left > 0 and select.select([self.proc.stdout], [], [], left)[0], f"{method}: no answer"
                chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
                assert chunk, f"the agent exited: {Path(self.log.name).read_text()[-2000:]}"
                self.buffer += chunk
            line, _, self.buffer = self.buffer.partition(b"\n")
            message = json.loads(line)
            if message.get("id") == self.ids:
                return message  # type: ignore[no-any-return]

    def result(self, method: str, **params: Any) -> dict[str, Any]:
        message = self.call(method, **params)
        assert "result" in message, message
        return message["result"]  # type: ignore[no-any-return]

    def error(self, method: str, **params: Any) -> dict[str, Any]:
        message = self.call(method, **params)
        assert "error" in message, message
        return message["error"]  # type: ignore[no-any-return]

    def stop(self) -> int:
        assert self.proc.stdin
        self.proc.stdin.close()  # the controller went away: the agent ends its sessions and exits
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.log.close()


@pytest.fixture(scope="module")
def zipapp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("agent-zip") / "agent.pyz"
    write_bundle(path)
    return path


@pytest.fixture
def start(zipapp: Path, dump_fixture: Fixture, tmp_path: Path) -> Iterator[Any]:
    """start(policy) -> (agent, vmcore path): a dump dir with the sysrq dump, the policy allowing it."""
    dumps = tmp_path / "dumps"
    _link(dump_fixture.vmcore("sysrq"), dumps / "vmcore")
    _link(dump_fixture.vmlinux, dumps / dump_fixture.vmlinux.name)
    agents: list[Agent] = []

    def spawn(policy: dict[str, Any]) -> tuple[Agent, str]:
        path = tmp_path / "policy.json"
        path.write_text(json.dumps(dict(policy, dump_dirs=[str(dumps)])))
        path.chmod(0o644)  # owned by us (root), not group/other-writable: trusted
        agent = Agent(zipapp, tmp_path / "agent", path, tmp_path / "agent.log")
        agents.append(agent)
        return agent, str(dumps / "vmcore")

    yield spawn
    for agent in agents:
        if agent.proc.poll() is None:
            agent.stop()


def test_drgn_code_false_refuses_code_but_runs_bundled_scripts(start: Any) -> None:
    agent, vmcore = start({"drgn_code": False})
    opened = agent.result("dumps.open", vmcore=vmcore)
    sid = opened["session_id"]
    assert "sysrq triggered crash" in opened["page"]["text"]
    refused = agent.error("dumps.drgn", session_id=sid, code="1 + 1")
    assert refused["data"]["kind"] == "policy_denied" and "drgn_code: false" in refused["message"]
    assert "analysis_run" in refused["data"]["hint"]
    sent = agent.error("dumps.script", session_id=sid, name="mine", code="print(prog['jiffies'])")
    assert sent["data"]["kind"] == "policy_denied" and "panic_summary" in sent["data"]["hint"]
    assert agent.result("dumps.scripts")["drgn_code"] is False
    summary = agent.result("dumps.script", session_id=sid, name="panic_summary")
    assert summary["ok"] and "sysrq triggered crash" in summary["page"]["text"]
    info = agent.result("dumps.sessions")["sessions"][0]
    assert agent.stop() == 0
    assert not alive(info["crash_pid"]) and not alive(info["drgn_pid"])


def test_drgn_worker_over_its_timeout_is_killed_and_idle_sessions_are_reaped(start: Any) -> None:
    idle = 5.0
    agent, vmcore = start({"dump_session_idle": idle})
    sid = agent.result("dumps.open", vmcore=vmcore)["session_id"]
    agent.result("dumps.drgn", session_id=sid, code="kept = 41")
    first = agent.result("dumps.sessions")["sessions"][0]["drgn_pid"]
    assert alive(first)

    spin = agent.result("dumps.drgn", session_id=sid, code="while True: pass", timeout=1)
    assert spin["ended"] == "killed" and spin["ok"] is False
    assert "ran over 1s" in spin["note"] and "namespace is lost" in spin["note"]
    assert not alive(first)
    lost = agent.result("dumps.drgn", session_id=sid, code="kept + 1")
    assert lost["ok"] is False and "NameError" in lost["error"]  # a new worker, a new namespace
    session = agent.result("dumps.sessions")["sessions"][0]
    assert alive(session["drgn_pid"]) and session["drgn_pid"] != first and alive(session["crash_pid"])

    deadline = time.monotonic() + idle + 60
    # The reaper drops the session from the list, then kills its processes: wait for both.
    while agent.result("dumps.sessions")["sessions"] or alive(session["crash_pid"]) or alive(session["drgn_pid"]):
        assert time.monotonic() < deadline, "the idle session was never closed, or its processes live on"
        time.sleep(0.5)
    gone = agent.error("dumps.crash", session_id=sid, command="sys")
    assert gone["data"]["kind"] == "unknown_session" and "expired after 5s idle" in gone["message"]
    assert agent.stop() == 0
