"""A real agent process (the zipapp) with a host policy file, spoken to in JSON-RPC on pipes,
as the controller's link would; shared by the dump policy and the security tests."""

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
from tests.dumps.fixture import Fixture, link_file

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
        self.proc = subprocess.Popen(
            [sys.executable, str(zipapp), "serve", "--dir", str(directory), "--policy", str(policy)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.ids = 0
        self.buffer = b""

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.ids += 1
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(
            json.dumps({"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params}).encode() + b"\n"
        )
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


def sysrq_dumps(fixture: Fixture, directory: Path) -> Path:
    """A dump dir holding the sysrq dump (as `vmcore`) and its vmlinux, linked from the cache."""
    link_file(fixture.vmcore("sysrq"), directory / "vmcore")
    link_file(fixture.vmlinux, directory / fixture.vmlinux.name)
    return directory / "vmcore"


def hermetic(policy: dict[str, Any], directory: Path) -> dict[str, Any]:
    """`policy` plus what keeps the agent off this machine's own debuginfo, drgn venv and debuginfod
    servers (an Ansible run or a -dbg package here must not change a test's answer)."""
    return {
        "vmlinux_standard_dirs": False,
        "drgn_venv": str(directory / "no-drgn-venv"),
        "debuginfod_urls": [],
        **policy,
    }


def spawn(zipapp: Path, directory: Path, policy: dict[str, Any], dumps: Path) -> Agent:
    """An agent in `directory` whose host policy is `policy`, allowing the dumps under `dumps`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "policy.json"
    path.write_text(json.dumps(dict(hermetic(policy, directory), dump_dirs=[str(dumps)])))
    path.chmod(0o644)  # owned by us (root), not group/other-writable: trusted
    return Agent(zipapp, directory / "agent", path, directory / "agent.log")


@pytest.fixture
def start(zipapp: Path, dump_fixture: Fixture, tmp_path: Path) -> Iterator[Any]:
    """start(policy) -> (agent, vmcore path): a dump dir with the sysrq dump, the policy allowing it."""
    vmcore = sysrq_dumps(dump_fixture, tmp_path / "dumps")
    agents: list[Agent] = []

    def start_agent(policy: dict[str, Any]) -> tuple[Agent, str]:
        agent = spawn(zipapp, tmp_path, policy, vmcore.parent)
        agents.append(agent)
        return agent, str(vmcore)

    yield start_agent
    for agent in agents:
        if agent.proc.poll() is None:
            agent.stop()
