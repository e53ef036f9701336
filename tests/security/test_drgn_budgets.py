"""Resources from drgn code: what one `drgn_run` can pin is bounded by its sandbox's budgets.

drgn code is arbitrary Python by design: no allow-list stands in front of it, so these attacks
face the OS sandbox alone (the policy's sandbox on). Each is sent to a real agent as a caller
would send it, on the fixture dump, and checks the host: its shared memory (tmpfs, memfd and
System V pages all count as Shmem), the agent's own memory, that the agent keeps answering,
that the offending process is gone, and what the answer says ended the call.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crashfleet.agent import cgroups
from tests.dumps.agentproc import Agent, sysrq_dumps
from tests.dumps.fixture import Fixture, link_file
from tests.rig import procs
from tests.security.attack import wait_until
from tests.security.hostile import (
    BUDGETS,
    LAYERS,
    Hostile,
    MiB,
    agent_cgroups,
    meminfo,
    open_session,
    rss,
    stop,
    value,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox's namespaces and cgroups need root")
ATTEMPT = 3 << 30  # what each attack tries to pin: what one drgn_run pinned before budgets (3 GiB)
SLACK = 256 * MiB  # other work on this shared machine moves the host's figures too
CPUS = 0.2  # sandbox_drgn_cpus here: below what two spinners get even on a busy 2-core machine


@pytest.fixture(scope="module")
def hostile(zipapp: Path, dump_fixture: Fixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    base = tmp_path_factory.mktemp("budgets")
    policy = dict(LAYERS["sandbox"], sandbox_drgn_cpus=CPUS)
    opened = open_session(zipapp, dump_fixture, base, policy, "sandbox")
    yield opened
    stop(opened)
    shutil.rmtree(base, ignore_errors=True)


def end_worker(h: Hostile) -> None:
    """End the session's drgn worker the way a caller can (code past its timeout): it is killed."""
    pid = h.drgn_pid()
    answer = h.drgn("while True:\n    pass", timeout=1)
    assert answer["ended"] == "killed" and answer["cap"] == "timeout", answer
    assert pid is None or wait_until(lambda: not procs.alive(pid), 30)


TMPFS = f"""
import os
wrote = {{}}
for d in ("/tmp", "/var/tmp", "/dev/shm"):
    n = 0
    try:
        with open(d + "/fill", "wb") as f:
            while n < {ATTEMPT}:
                f.write(b"\\1" * (1 << 20))
                n += 1 << 20
    except OSError as exc:
        wrote[d] = (n, exc.errno)
wrote
"""


def test_the_private_tmpfs_holds_no_more_than_its_budget(hostile: Hostile) -> None:
    """/tmp, /var/tmp and /dev/shm share one tmpfs of sandbox_tmpfs_bytes: 3 GiB of writes stop
    at it (ENOSPC), the host's Shmem grows by that much at most, and is freed with the worker."""
    before = meminfo("Shmem")
    wrote = value(hostile.drgn(TMPFS))
    grown = meminfo("Shmem") - before
    assert sum(n for n, _ in wrote.values()) <= BUDGETS["sandbox_tmpfs_bytes"], wrote
    assert {errno for _, errno in wrote.values()} == {28}, wrote  # ENOSPC, in each of the three dirs
    assert grown < BUDGETS["sandbox_tmpfs_bytes"] + SLACK, grown
    assert hostile.answers()
    end_worker(hostile)
    assert wait_until(lambda: meminfo("Shmem") < before + SLACK // 4, 30), (before, meminfo("Shmem"))


MEMFD = f"""
import os
fds, n = [], 0
while n < {ATTEMPT}:
    fd = os.memfd_create("pin")
    for _ in range(128):
        os.write(fd, b"\\1" * (1 << 20))
    fds.append(fd)
    n += 128 << 20
n
"""


def test_memfd_pages_end_at_the_session_memory_budget(hostile: Hostile, dump_fixture: Fixture) -> None:
    """memfds are not in the tmpfs: the session's memory cgroup counts them. The code process is
    killed by the kernel at the budget, the answer says so, its pages are freed, the agent keeps
    its memory and answers, crash and another session are untouched, and the next drgn_run has
    a new worker."""
    other = Path(hostile.vmcore).parent / "vmcore-other"  # the same dump by another name: a session of its own
    link_file(dump_fixture.vmcore("sysrq"), other)
    neighbour = hostile.agent.result("dumps.open", vmcore=str(other))["session_id"]
    assert hostile.agent.result("dumps.drgn", session_id=neighbour, code="7 * 6")["value"] == "42"
    neighbours = {s["session_id"]: s for s in hostile.agent.result("dumps.sessions")["sessions"]}[neighbour]
    crash_pid = _crash_pid(hostile)
    assert value(hostile.drgn("1")) == 1  # a worker to attack
    shmem, agent_rss = meminfo("Shmem"), rss(hostile.pid)
    worker = hostile.drgn_pid()
    answer = hostile.drgn(MEMFD)
    assert answer["ended"] == "killed" and answer["cap"] == "memory", answer
    assert "memory budget" in answer["note"]
    assert wait_until(lambda: meminfo("Shmem") < shmem + SLACK // 4, 30), (shmem, meminfo("Shmem"))
    assert rss(hostile.pid) < agent_rss + 32 * MiB
    assert hostile.answers()
    assert worker is not None and wait_until(lambda: not procs.alive(worker), 30)
    assert value(hostile.drgn("sum(1 for _ in for_each_task(prog))")) > 40
    assert _crash_pid(hostile) == crash_pid  # first in line for the OOM killer: the code process, not crash
    after = {s["session_id"]: s for s in hostile.agent.result("dumps.sessions")["sessions"]}[neighbour]
    assert (after["drgn_pid"], after["crash_pid"]) == (neighbours["drgn_pid"], neighbours["crash_pid"])
    assert hostile.agent.result("dumps.drgn", session_id=neighbour, code="7 * 6")["value"] == "42"
    hostile.agent.result("dumps.close", session_id=neighbour)


SYSV = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
attached, err = 0, 0
for _ in range(96):  # 3 GiB in 32 MiB segments, all kept attached
    sid = libc.shmget(0, 32 << 20, 0o1600)
    if sid < 0:
        err = ctypes.get_errno()
        break
    ctypes.memset(libc.shmat(sid, None, 0), 1, 32 << 20)
    attached += 32 << 20
(attached, err)
"""


def test_system_v_shared_memory_is_capped_in_the_private_ipc_namespace(hostile: Hostile) -> None:
    """shmget is not a file either: its namespace's shmall is the tmpfs budget (ENOSPC past it),
    and segments die with the last process attached (shm_rmid_forced)."""
    before = meminfo("Shmem")
    attached, err = value(hostile.drgn(SYSV))
    assert attached <= BUDGETS["sandbox_tmpfs_bytes"] and err == 28, (attached, err)
    assert meminfo("Shmem") - before < BUDGETS["sandbox_tmpfs_bytes"] + SLACK
    end_worker(hostile)
    assert wait_until(lambda: meminfo("Shmem") < before + SLACK // 4, 30)


FORKS = """
import os, time
n, err = 0, None
try:
    while n < 10000:
        if os.fork() == 0:
            time.sleep(3600)
            os._exit(0)
        n += 1
except OSError as exc:
    err = exc.errno
(n, err)
"""


def test_a_fork_bomb_stops_at_the_process_budget(hostile: Hostile) -> None:
    """pids.max of the code's cgroup: fork fails (EAGAIN) past sandbox_processes (plus the CPUs);
    the sleepers die with the worker, and the agent answers all along."""
    n, err = value(hostile.drgn(FORKS))
    assert err == 11 and n <= 64 + (os.cpu_count() or 1), (n, err)
    assert hostile.answers()
    worker = hostile.drgn_pid()
    assert worker is not None
    tree = procs.descendants([worker])
    assert len(tree) >= n
    end_worker(hostile)
    assert wait_until(lambda: not [p for p in tree if procs.alive(p)], 30)


SPIN = """
import os, time
end = time.monotonic() + 4
kids = []
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        while time.monotonic() < end:
            pass
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
len(kids)
"""


def test_spinning_code_is_held_to_its_cpu_budget(hostile: Hostile) -> None:
    """Two processes spinning in drgn code share sandbox_drgn_cpus (CPUS): the kernel throttles
    their cgroup (cpu.max) and the agent answers once they are done."""
    assert value(hostile.drgn(SPIN)) == 2
    stat = _cpu_stat(hostile, "drgn-code")
    assert stat.get("nr_throttled", 0) > 0, stat
    assert hostile.answers()


def _cpu_stat(h: Hostile, name: str) -> dict[str, int]:
    for base in agent_cgroups(h.pid):
        path = Path(base) / ("session-" + h.session) / name / "cpu.stat"
        if path.exists():
            return {k: int(v) for k, v in (line.split() for line in path.read_text().splitlines())}
    raise AssertionError("no cpu cgroup for the drgn code")


def _crash_pid(h: Hostile) -> int | None:
    sessions = h.agent.result("dumps.sessions")["sessions"]
    return next(s["crash_pid"] for s in sessions if s["session_id"] == h.session)  # type: ignore[no-any-return]


# -- a host where the agent cannot use cgroups -----------------------------------------------

READ_ONLY_CGROUPS = """
set -e
for m in $(awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts); do
    mount -o remount,bind,ro "$m"
done
exec "$@"
"""


class NoCgroupAgent(Agent):
    """An agent in a mount namespace of its own where every cgroup hierarchy is read-only: a real
    host whose cgroups the agent may not write (an undelegated systemd host, a container)."""

    def __init__(self, zipapp: Path, directory: Path, policy: Path, log: Path) -> None:
        self.log = open(log, "wb")
        argv = [sys.executable, str(zipapp), "serve", "--dir", str(directory), "--policy", str(policy)]
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", READ_ONLY_CGROUPS, "sh", *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.ids = 0
        self.buffer = b""


def _no_cgroup_agent(base: Path, zipapp: Path, fixture: Fixture, policy: dict[str, Any]) -> tuple[Agent, str]:
    vmcore = sysrq_dumps(fixture, base / "dumps")
    path = base / "policy.json"
    path.write_text(json.dumps(dict(policy, dump_dirs=[str(vmcore.parent)])))
    return NoCgroupAgent(zipapp, base / "agent", path, base / "agent.log"), str(vmcore)


def test_without_writable_cgroups_the_sandbox_says_partial_and_falls_back(
    zipapp: Path, dump_fixture: Fixture, tmp_path: Path
) -> None:
    """facts (fleet_check's sandbox) say partial and why; require_sandbox refuses to start crash;
    without it, the tmpfs size still bounds the tmpfs attack (the fallback: size= and rlimits)."""
    strict, vmcore = _no_cgroup_agent(tmp_path / "strict", zipapp, dump_fixture, dict(BUDGETS, require_sandbox=True))
    try:
        facts = strict.result("facts")
        assert facts["sandbox"].startswith("partial (") and "no memory cgroup" in facts["sandbox"], facts["sandbox"]
        assert "read-only" in facts["sandbox"] or "not writable" in facts["sandbox"], facts["sandbox"]
        refused = strict.error("dumps.open", vmcore=vmcore)
        assert refused["data"]["kind"] == "sandbox_unavailable" and "no memory cgroup" in refused["message"]
    finally:
        strict.stop()
    loose, vmcore = _no_cgroup_agent(tmp_path / "loose", zipapp, dump_fixture, BUDGETS)
    try:
        sid = loose.result("dumps.open", vmcore=vmcore)["session_id"]
        wrote = value(loose.result("dumps.drgn", session_id=sid, code=TMPFS, timeout=120))
        assert sum(n for n, _ in wrote.values()) <= BUDGETS["sandbox_tmpfs_bytes"], wrote
    finally:
        pid = loose.proc.pid
        loose.stop()
    assert not agent_cgroups(pid)
    assert cgroups.discover()[0] is not None  # the test's own namespace kept its writable cgroups
