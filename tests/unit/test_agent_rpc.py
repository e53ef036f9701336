"""The agent's JSON-RPC framing, run as a real process (the zipapp) on pipes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crashfleet.controller.bundle import write_bundle
from tests.helpers import cwd, pids_matching


class AgentProc:
    def __init__(self, zipapp: Path, directory: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(zipapp), "serve", "--dir", str(directory), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def send(self, raw: bytes) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(raw)
        self.proc.stdin.flush()

    def request(self, req_id: int, method: str, **params: object) -> None:
        self.send(json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params}).encode() + b"\n")

    def read(self) -> dict:  # type: ignore[type-arg]
        assert self.proc.stdout
        line = self.proc.stdout.readline()
        assert line, f"agent closed stdout; stderr: {self.proc.stderr.read() if self.proc.stderr else ''}"
        return json.loads(line)  # type: ignore[no-any-return]

    def reply(self, req_id: int) -> dict:  # type: ignore[type-arg]
        while True:
            message = self.read()
            if message.get("id") == req_id:
                return message


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProc]:
    zipapp = tmp_path / "agent.pyz"
    write_bundle(zipapp)
    proc = AgentProc(zipapp, tmp_path / "dir")
    yield proc
    proc.proc.kill()
    proc.proc.wait()


def test_errors_are_structured(agent: AgentProc) -> None:
    agent.send(b"this is not json\n")
    assert agent.read()["error"]["code"] == -32700
    agent.send(b'["not", "an", "object"]\n')
    assert agent.read()["error"]["code"] == -32600
    agent.request(1, "no.such.method")
    error = agent.reply(1)["error"]
    assert error["code"] == -32601 and "hello" in error["data"]["hint"]
    agent.request(2, "page", output_id=5)
    assert agent.reply(2)["error"]["code"] == -32602
    agent.request(3, "page", output_id="0123456789")
    assert agent.reply(3)["error"]["data"]["kind"] == "unknown_output"
    agent.request(4, "run", command="rm")
    assert "uname" in agent.reply(4)["error"]["data"]["hint"]


def test_oversized_line_is_refused_and_the_agent_goes_on(agent: AgentProc) -> None:
    agent.send(b"x" * (1 << 20) + b"yyyy\n")
    assert "1 MiB" in agent.read()["error"]["message"]
    agent.request(1, "ping")
    assert "result" in agent.reply(1)


def test_requests_run_concurrently(agent: AgentProc) -> None:
    agent.request(1, "run", command="vmstat", duration=3, wait=10)  # busy for ~3 s
    started = time.monotonic()
    agent.request(2, "ping")
    assert "result" in agent.reply(2)
    assert time.monotonic() - started < 2.0, "ping waited behind the slow request"
    result = agent.reply(1)["result"]
    assert (result["state"] == "done" and result["page"]["text"].startswith("--procs--")) or "procs" in result["page"][
        "text"
    ]


def test_eof_stops_every_child(agent: AgentProc, tmp_path: Path) -> None:
    agent.request(1, "run", command="vmstat", duration=300, wait=0)
    job = agent.reply(1)["result"]
    assert job["state"] == "running"
    deadline = time.monotonic() + 5
    while not [p for p in pids_matching("vmstat", "-w") if cwd(p).startswith(str(tmp_path))]:
        assert time.monotonic() < deadline, "vmstat never started"
        time.sleep(0.05)
    assert agent.proc.stdin
    agent.proc.stdin.close()  # the controller went away
    assert agent.proc.wait(10) == 0
    assert not [p for p in pids_matching("vmstat", "-w") if cwd(p).startswith(str(tmp_path))]


def policy_agent(tmp_path: Path, policy: dict, mode: int = 0o644) -> AgentProc:  # type: ignore[type-arg]
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(policy))
    path.chmod(mode)
    zipapp = tmp_path / "agent.pyz"
    write_bundle(zipapp)
    return AgentProc(zipapp, tmp_path / "dir", "--policy", str(path))


def test_policy_is_enforced_by_the_agent(tmp_path: Path) -> None:
    agent = policy_agent(tmp_path, {"deny_commands": ["dmesg"], "max_duration": 5})
    try:
        agent.request(1, "run", command="dmesg")
        error = agent.reply(1)["error"]
        assert error["data"]["kind"] == "policy_denied" and "dmesg" in error["message"]
        agent.request(2, "run", command="vmstat", duration=60)
        error = agent.reply(2)["error"]
        assert error["data"]["kind"] == "policy_denied" and "cap of 5" in error["message"]
        agent.request(3, "run", command="uname", wait=5)
        assert agent.reply(3)["result"]["state"] == "done"
    finally:
        agent.proc.kill()
        agent.proc.wait()


def test_a_policy_others_could_write_is_refused(tmp_path: Path) -> None:
    agent = policy_agent(tmp_path, {"deny_commands": []}, mode=0o666)
    assert agent.proc.wait(10) == 2
    assert agent.proc.stderr and b"not writable by group or others" in agent.proc.stderr.read()
