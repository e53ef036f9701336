"""The budgets on cgroup v2 and Landlock ABI 2: Debian 12's own kernel in the VM host
(tests/rig/vmhost.py), whose hierarchies are unified (this machine binds its controllers to v1).

The VM boots without systemd and without cgroups mounted: the test mounts cgroup2 where a
Debian host has it, and the agent (pushed by a real controller over SSH) makes its subtree at
/crashfleet. drgn code on the live kernel then fills its tmpfs and memfds: the tmpfs stops at
its size, the memfds at the session's memory.max (the kernel's OOM killer, counted in
memory.events), and the session's cgroups are gone when it closes.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
import yaml

from crashfleet.controller.tools import dumps as d
from tests.dumps.fixture import Fixture
from tests.rig.vmhost import VMHost, running
from tests.security.attack import wait_until

pytestmark = [pytest.mark.ssh, pytest.mark.asyncio(loop_scope="module")]
HOST = "vm01"
MiB = 1 << 20
POLICY = {"live_kernel": True, "sandbox_session_memory_bytes": 1536 * MiB, "sandbox_tmpfs_bytes": 64 * MiB}


@pytest.fixture(scope="module")
def vm(dump_fixture: Fixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VMHost]:
    with running(dump_fixture, tmp_path_factory.mktemp("vm-budgets")) as host:
        policy = shlex.quote(json.dumps(POLICY))
        done = host.ssh(
            "mount -t cgroup2 none /sys/fs/cgroup && "
            f"mkdir -p /etc/crashfleet && echo {policy} > /etc/crashfleet/agent-policy.json && "
            "chmod 644 /etc/crashfleet/agent-policy.json"
        )
        assert done.returncode == 0, done.stderr
        yield host


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vrt(vm: VMHost, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    from crashfleet.controller.runtime import Runtime
    from crashfleet.controller.settings import Settings

    state = tmp_path_factory.mktemp("vm-budgets-state")
    inventory = state / "inventory.yml"
    host = {
        "ansible_host": "127.0.0.1",
        "ansible_port": vm.port,
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(vm.image.key),
        "ansible_python_interpreter": "/usr/bin/python3",
    }
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {HOST: host}}}))
    settings = Settings(
        inventory=inventory, ssh_known_hosts=vm.known_hosts, audit_log=state / "audit.jsonl", host_deadline=600
    )
    rt = Runtime.create(settings, who="pytest-vm-budgets")
    yield rt
    await rt.close()
    # the agent's subtree goes with it (the controller's close ends its agent)
    assert wait_until(lambda: not cgroups(vm), 120), cgroups(vm)


def cgroups(vm: VMHost) -> list[str]:
    done = vm.ssh("find /sys/fs/cgroup/crashfleet -mindepth 1 -type d 2>/dev/null || true")
    return sorted(done.stdout.decode().split())


TMPFS = """
import os
wrote = {}
for d in ("/tmp", "/var/tmp", "/dev/shm"):
    n = 0
    try:
        with open(d + "/fill", "wb") as f:
            while n < (1 << 30):
                f.write(b"\\1" * (1 << 20))
                n += 1 << 20
    except OSError as exc:
        wrote[d] = (n, exc.errno)
wrote
"""
MEMFD = """
import os
fds, n = [], 0
while n < (2 << 30):
    fd = os.memfd_create("pin")
    for _ in range(64):
        os.write(fd, b"\\1" * (1 << 20))
    fds.append(fd)
    n += 64 << 20
n
"""


async def test_cgroup_v2_budgets_hold_on_debians_kernel(vrt: Any, vm: VMHost) -> None:
    facts = await vrt.fleet.call(vrt.fleet.host(HOST), "facts")
    assert facts["sandbox"] == "full", facts["sandbox"]
    opened = await d.crash_open(vrt, HOST, live=True)
    sid = opened.session.session_id
    try:
        tmpfs = await d.drgn_run(vrt, sid, TMPFS, timeout=600)
        assert tmpfs.ok and tmpfs.value, tmpfs
        wrote = eval(tmpfs.value)  # our own code's repr of a dict of tuples
        assert sum(n for n, _ in wrote.values()) <= POLICY["sandbox_tmpfs_bytes"], wrote
        groups = cgroups(vm)
        agent = next(g for g in groups if g.count("/") == 5)  # /sys/fs/cgroup/crashfleet/agent-PID-START
        session = agent + "/session-" + sid.split(":")[1]
        assert {session + "/drgn", session + "/drgn-code"} <= set(groups), groups
        limits = vm.ssh(f"cat {session}/memory.max {session}/drgn-code/cpu.max {session}/drgn-code/memory.swap.max")
        assert limits.stdout.decode().split()[:3] == [str(POLICY["sandbox_session_memory_bytes"]), "100000", "100000"]
        pinned = await d.drgn_run(vrt, sid, MEMFD, timeout=600)
        assert pinned.ended == "killed" and pinned.cap == "memory", pinned
        events = vm.ssh(f"cat {session}/drgn-code/memory.events").stdout.decode()
        assert "oom_kill 1" in events or "oom_kill 2" in events, events
        again = await d.drgn_run(vrt, sid, "sum(1 for _ in for_each_task(prog))", timeout=600)
        assert again.ok and int(again.value or 0) > 10, again
        # Landlock ABI 2 cannot scope signals: there the code process can signal (not forge) its worker
        scoped = await d.drgn_run(vrt, sid, "import os; os.kill(os.getppid(), 0)", timeout=600)
        assert scoped.ok, scoped
    finally:
        await d.session_close(vrt, sid)
    assert not [g for g in cgroups(vm) if "/session-" in g], cgroups(vm)
