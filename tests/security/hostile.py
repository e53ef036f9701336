"""What the resource and integrity attacks need: a real agent with a session on the fixture dump
(kept for a module: crash takes tens of seconds to open here), the host's memory as the kernel
counts it, the agent's own memory, and the cgroups and processes an agent left behind."""

from __future__ import annotations

import glob
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crashfleet.agent import cgroups
from tests.dumps.agentproc import Agent, spawn, sysrq_dumps
from tests.dumps.fixture import Fixture
from tests.rig import procs
from tests.security.attack import wait_until

MiB = 1 << 20
# Budgets small enough to reach quickly, large enough for crash (~400 MB) and drgn (~250 MB) on the fixture.
BUDGETS = {
    "sandbox_session_memory_bytes": 1 << 30,
    "sandbox_tmpfs_bytes": 64 * MiB,
    "max_output_bytes": 32 * MiB,
}
# The two layers alone, as the rest of the suite runs them: the OS sandbox (with its budgets), and
# the agent's own checks without it (policy sandbox: false).
LAYERS = {"sandbox": dict(BUDGETS, sandbox=True), "allow-lists-alone": dict(BUDGETS, sandbox=False)}


def meminfo(key: str) -> int:
    """A /proc/meminfo figure in bytes (Shmem: tmpfs, shared memory and memfd pages of the host)."""
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise KeyError(pid)


def agent_cgroups(pid: int) -> list[str]:
    """Every cgroup dir the agent with this pid made (in any hierarchy)."""
    name = "agent-%d-*" % pid
    found: list[str] = []
    for point in {m[0] for m in cgroups.cgroup_mounts().values()}:
        found += glob.glob(os.path.join(point, "**", cgroups.ANCHOR, name), recursive=True)
    return found


@dataclass
class Hostile:
    """An agent, its dump session, and the call that runs drgn code as a caller would send it."""

    agent: Agent
    vmcore: str
    session: str
    layer: str

    @property
    def pid(self) -> int:
        return self.agent.proc.pid

    def drgn(self, code: str, timeout: float = 120) -> dict[str, Any]:
        return self.agent.result("dumps.drgn", session_id=self.session, code=code, timeout=timeout)

    def script(self, name: str, *args: str) -> dict[str, Any]:
        return self.agent.result("dumps.script", session_id=self.session, name=name, args=list(args), timeout=300)

    def drgn_pid(self) -> int | None:
        sessions = self.agent.result("dumps.sessions")["sessions"]
        return next(s["drgn_pid"] for s in sessions if s["session_id"] == self.session)

    def answers(self) -> bool:
        return "time" in self.agent.result("ping")


def open_session(zipapp: Path, fixture: Fixture, base: Path, policy: dict[str, Any], layer: str) -> Hostile:
    vmcore = sysrq_dumps(fixture, base / "dumps")
    agent = spawn(zipapp, base, policy, vmcore.parent)
    opened = agent.result("dumps.open", vmcore=str(vmcore))
    return Hostile(agent, str(vmcore), opened["session_id"], layer)


def stop(hostile: Hostile) -> None:
    """End the agent as the controller does (stdin closed); nothing of it may be left."""
    pid = hostile.pid
    tree = procs.descendants([pid])
    assert hostile.agent.stop() == 0, Path(hostile.agent.log.name).read_text()[-2000:]
    assert wait_until(lambda: not [p for p in tree if procs.alive(p)], 30), "the agent's children outlived it"
    assert not agent_cgroups(pid), f"cgroups left: {agent_cgroups(pid)}"


@pytest.fixture(scope="module", params=list(LAYERS))
def hostile(
    request: pytest.FixtureRequest, zipapp: Path, dump_fixture: Fixture, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hostile]:
    """A session per layer, shared by a module's attacks (each leaves the session usable)."""
    base = tmp_path_factory.mktemp("hostile-" + request.param)
    opened = open_session(zipapp, dump_fixture, base, LAYERS[request.param], request.param)
    yield opened
    stop(opened)
    shutil.rmtree(base, ignore_errors=True)


def value(answer: dict[str, Any]) -> Any:
    """The drgn answer's value, as our own attack code printed it (a repr of plain data)."""
    assert answer["ok"], answer
    return eval(answer["value"])  # our own attack code's repr of ints, strings, tuples


def page(answer: dict[str, Any]) -> str:
    return str(answer["page"]["text"])


def dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)
