"""A fleet of live kernels: two VM hosts of one cached image (tests/rig/vmhost.py), each its own
QEMU, host key, known_hosts line and inventory entry, policy live_kernel on. A live session on
each, then one analysis script across both (grouped), and a kprobe bpftrace tool (kprobes: the
guest's kernel has them, this machine's has not) with its maps merged fleet-wide."""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from crashfleet.controller.errors import UsageError
from crashfleet.controller.tools import bpftrace as b
from crashfleet.controller.tools import dumps as d
from tests.dumps.fixture import Fixture
from tests.rig.vmhost import VMHost, fleet, write_inventory

pytestmark = [pytest.mark.ssh, pytest.mark.asyncio(loop_scope="module")]
HOSTS = ("vm01", "vm02")
MEMORY_MB = 1024  # drgn's index of the 590 MB vmlinux; crash tries too (and is OOM-killed or fails)
LEFT = "ps -eo comm,args | grep -E '^(crash|bpftrace) |[c]rashfleet-agent-|[d]rgn_worker' || true"


@pytest.fixture(scope="module")
def vms(dump_fixture: Fixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, VMHost]]:
    with fleet(dump_fixture, tmp_path_factory.mktemp("vmfleet"), len(HOSTS), MEMORY_MB) as hosts:
        policy = shlex.quote(json.dumps({"live_kernel": True}))
        for host in hosts:
            done = host.ssh(f"mkdir -p /etc/crashfleet && echo {policy} > /etc/crashfleet/agent-policy.json")
            assert done.returncode == 0, done.stderr
        yield dict(zip(HOSTS, hosts))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def frt(vms: dict[str, VMHost], tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    from crashfleet.controller.runtime import Runtime
    from crashfleet.controller.settings import Settings

    state = tmp_path_factory.mktemp("vmfleet-state")
    inventory, known = write_inventory(vms, "vms", state)  # one known_hosts line per VM, each its own key
    settings = Settings(inventory=inventory, ssh_known_hosts=known, audit_log=state / "audit.jsonl", host_deadline=300)
    rt = Runtime.create(settings, who="pytest-vmfleet")
    yield rt
    await rt.close()
    for name, vm in vms.items():  # the agent ends with its link, and every child with it
        assert await _settled(vm), f"{name} kept: {vm.ssh(LEFT).stdout.decode()}"


async def _settled(vm: VMHost, timeout: float = 60.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if not vm.ssh(LEFT).stdout.strip():
            return True
        await asyncio.sleep(0.5)
    return False


async def test_each_vm_has_its_own_host_key(vms: dict[str, VMHost]) -> None:
    keys = {vm.known_hosts.read_text().split()[-1] for vm in vms.values()}
    assert len(keys) == len(vms), keys
    for vm in vms.values():  # StrictHostKeyChecking against its own line alone
        assert vm.ssh("true").returncode == 0


async def test_analysis_fleet_over_live_hosts_is_grouped(
    frt: Any, vms: dict[str, VMHost], dump_fixture: Fixture
) -> None:
    opened = await asyncio.gather(*(d.crash_open(frt, name, live=True) for name in HOSTS))
    sids = [o.session.session_id for o in opened]
    try:
        assert [o.session.format for o in opened] == ["live", "live"], opened
        # Idle guests of one image: the same (empty) D-state answer, one group, hosts folded.
        same = await d.analysis_fleet(frt, sids, "dstate_stacks")
        assert same.summary.ok == 2 and len(same.groups) == 1, same
        assert same.groups[0].hosts == "vm[01-02]" and same.groups[0].count == 2
        assert "no task is in D state" in (same.groups[0].output or "")
        assert len(same.groups[0].output_ids) == 2
        # A summary with uptimes and log times: grouped however it came out, every host answered.
        summary = await d.analysis_fleet(frt, sids, "panic_summary", ["3"])
        assert summary.summary.ok == 2 and sum(g.count for g in summary.groups) == 2, summary
        for group in summary.groups:
            text = group.output or ""
            assert "(none: a live kernel)" in text and f"release: {dump_fixture.release}" in text, text
        with pytest.raises(UsageError, match="two sessions on vm01"):
            await d.analysis_fleet(frt, [sids[0], sids[0]], "dstate_stacks")
        with pytest.raises(UsageError, match="no analysis script 'nope'"):
            await d.analysis_fleet(frt, sids, "nope")
        with pytest.raises(UsageError, match="no sessions given"):
            await d.analysis_fleet(frt, [], "dstate_stacks")
        assert sorted(s.session_id for s in (await d.sessions_list(frt)).sessions) == sorted(sids)
    finally:
        closed = [await d.session_close(frt, sid) for sid in sids]
    assert (await d.sessions_list(frt)).sessions == []
    for name, info in zip(HOSTS, closed):
        pids = [p for p in (info.crash_pid, info.drgn_pid) if p]
        assert pids, info
        for pid in pids:
            assert vms[name].ssh(f"kill -0 {pid}").returncode != 0, f"{name}: {pid} outlived session_close"


async def test_a_kprobe_tool_runs_on_the_vm_fleet(frt: Any) -> None:
    """vfscount.bt (Debian's, vetted by hash): `kprobe:vfs_* { @[func] = count(); }`."""
    run = await b.bpftrace_run(frt, "vms", tool="vfscount.bt", duration=3)
    if run.job_id is not None:  # a slow host past command_wait: its result once it is done
        run = await b.bpftrace_result(frt, run.job_id, wait=60)
    assert run.summary.ok == 2, run
    assert len(run.maps) == 1, [(g.hosts, g.output) for g in run.groups]
    merged = run.maps[0]
    assert merged.kind == "count" and merged.hosts == "vm[01-02]", merged
    assert merged.keys and all(k.startswith("vfs_") for k in merged.keys), merged.keys
    assert {"vfs_read", "vfs_write"} & set(merged.keys) and all(v > 0 for v in merged.keys.values()), merged.keys
    assert sorted(f.host for f in merged.per_host) == list(HOSTS), merged.per_host
