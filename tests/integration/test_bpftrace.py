"""bpftrace across the rig on this machine's real kernel: events the tests cause, merged maps, safety."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crashfleet.agent.facts import tracefs_mount
from crashfleet.controller.errors import UsageError
from crashfleet.controller.runtime import Runtime
from crashfleet.controller.tools.bpftrace import (
    bpftrace_info,
    bpftrace_probes,
    bpftrace_result,
    bpftrace_run,
    bpftrace_tools,
)
from crashfleet.controller.tools.fleet import fleet_run
from crashfleet.controller.tools.jobs import job_cancel, job_status
from crashfleet.controller.tools.output import output_page
from tests.helpers import agent_pids, cwd, pids_matching, wait_until
from tests.rig import Rig

THREE = "web01:web02:web03"


@pytest.fixture(scope="session", autouse=True)
def tracefs() -> Iterator[None]:
    """bpftrace needs tracefs; this VM boots without it (the agent would mount it too)."""
    if shutil.which("bpftrace") is None:
        pytest.fail("bpftrace is not installed (./dev test installs it)")
    if tracefs_mount() is None:
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=True)
    yield


def tracers(rig: Rig) -> list[int]:
    """bpftrace processes started by this rig's agents (their cwd is the agent's work dir)."""
    return [pid for pid in pids_matching("bpftrace") if cwd(pid).startswith(str(rig.base))]


async def started_job(rt: Runtime, pattern: str, program: str, duration: float, **kw: object) -> str:
    """A bpftrace_run that became a job, returned once every host has attached its probes."""
    rt.settings.command_wait = 1.0
    result = await bpftrace_run(rt, pattern, program=program, duration=duration, **kw)  # type: ignore[arg-type]
    assert result.job_id and result.summary.running == result.summary.total, result
    refs = [ref for group in result.groups for ref in group.output_ids]
    for ref in refs:
        for _ in range(400):
            if "attached_probes" in (await output_page(rt, ref)).text:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"bpftrace did not attach on {ref}")
    return result.job_id


async def test_info_grouped(runtime: Runtime) -> None:
    result = await bpftrace_info(runtime, "web01:web02")
    [group] = result.groups
    assert group.hosts == "web[01-02]" and group.data
    assert group.data["version"].startswith("0.") and group.data["btf"] is True
    assert group.data["tracefs"]["path"] and group.data["probe_types"]["tracepoint"] > 100
    assert group.data["limits"]["BPFTRACE_MAP_KEYS_MAX"] == "4096"


async def test_probes_paged_and_grouped(runtime: Runtime) -> None:
    result = await bpftrace_probes(runtime, "web01:web02", filter="tracepoint:sched:*")
    [group] = result.groups
    assert group.hosts == "web[01-02]" and "tracepoint:sched:sched_switch" in (group.output or "")
    assert result.drift == []
    everything = await bpftrace_probes(runtime, "web01", filter="tracepoint:*")
    page = everything.groups[0]
    assert page.total_lines and page.total_lines > 100 and page.next_cursor  # more than one page
    second = await output_page(runtime, page.output_ids[0], page.next_cursor)
    assert second.start_line > 1 and second.text.startswith("tracepoint:")
    with pytest.raises(UsageError, match="not a probe glob"):
        await bpftrace_probes(runtime, "web01", filter="-c id")


async def test_counts_events_the_test_causes(rig: Rig, runtime: Runtime, tmp_path: Path) -> None:
    comm = "cfx" + uuid.uuid4().hex[:8]
    exe = tmp_path / comm
    shutil.copy("/bin/true", exe)
    program = (
        f'tracepoint:sched:sched_process_exec /comm == "{comm}"/ {{ @execs = count(); }}\n'
        "tracepoint:raw_syscalls:sys_enter /pid == $1 && args->id == 110/ { @getppid = count(); }"
    )
    job_id = await started_job(runtime, "web01:web02", program, 30, args={"1": os.getpid()})
    for _ in range(7):
        subprocess.run([str(exe)], check=True)
    for _ in range(300):
        os.getppid()
    await job_cancel(runtime, job_id)  # bpftrace prints its maps on the way out
    result = await bpftrace_result(runtime, job_id)
    maps = {m.name: m for m in result.maps}
    assert result.summary.ok == 2, result
    assert {f.host: f.value for f in maps["@execs"].per_host} == {"web01": 7, "web02": 7}
    assert maps["@execs"].value == 14 and maps["@execs"].kind == "count"
    assert all(f.value and f.value >= 300 for f in maps["@getppid"].per_host), maps["@getppid"]
    assert tracers(rig) == []


async def test_histograms_merge_across_three_hosts(rig: Rig, runtime: Runtime) -> None:
    # Each host counts only the execs of its own agent: we make them differ. Every tool the agent
    # starts is the child of its sandbox's waiter, so the agent is the grandparent, bpftrace's too.
    program = (
        "BEGIN { @agent = curtask->real_parent->real_parent->tgid; }\n"
        "tracepoint:sched:sched_process_exec /curtask->real_parent->real_parent->tgid == @agent/ "
        "{ @n = count(); @h = hist(@i); @i = @i + 1; }\n"
        "END { clear(@agent); clear(@i); }"
    )
    job_id = await started_job(runtime, THREE, program, 40)
    for host, times in (("web01", 2), ("web02", 3), ("web03", 12)):
        for _ in range(times):
            assert (await fleet_run(runtime, host, "uname")).summary.ok == 1
    await job_cancel(runtime, job_id)
    result = await bpftrace_result(runtime, job_id)
    maps = {m.name: m for m in result.maps}
    assert set(maps) == {"@n", "@h"}, maps.keys()
    count, hist = maps["@n"], maps["@h"]
    assert {f.host: f.value for f in count.per_host} == {"web01": 2, "web02": 3, "web03": 12}
    assert count.value == 17 and count.hosts == "web[01-03]"
    assert [o.host for o in count.outliers] == ["web03"]
    # @h gets 0..n-1 per host: the fleet histogram is the bucket-wise sum.
    assert [(b.min, b.max, b.count) for b in hist.histogram or []] == [
        (0, 0, 3),
        (1, 1, 3),
        (2, 3, 3),
        (4, 7, 4),
        (8, 15, 4),
    ]
    assert hist.count == 17 and hist.p99 == 15
    assert {f.host: (f.count, f.p99) for f in hist.per_host} == {"web01": (2, 1), "web02": (3, 3), "web03": (12, 15)}
    assert [o.host for o in hist.outliers] == ["web03"] and result.outlier_rule


async def test_tool_library_says_where_tools_can_run(runtime: Runtime) -> None:
    result = await bpftrace_tools(runtime, "web01:web02")
    tools = {t.name: t for t in result.tools}
    for name in ("runqlat", "syscount", "tcpretrans", "biolatency", "execsnoop", "proccount", "oomkill"):
        assert tools[name].source == "crashfleet" and tools[name].runs_on == "web[01-02]", tools[name]
        assert tools[name].description
    assert tools["runqlat"].args == ["pid=0 (only this pid, 0 = all)"]
    # kprobe-based distro tools cannot attach on this kernel, and oomkill.bt uses cat()
    [vfs] = tools["vfscount.bt"].cannot_run
    assert vfs.hosts == "web[01-02]" and "kprobe" in vfs.reason and tools["vfscount.bt"].runs_on == ""
    assert "cat()" in tools["oomkill.bt"].cannot_run[0].reason


async def test_bundled_tool_runs_and_merges(runtime: Runtime) -> None:
    result = await bpftrace_run(runtime, "web01:web02", tool="runqlat", duration=1)
    assert result.summary.ok == 2 and not result.job_id, result
    [usecs] = result.maps
    assert usecs.name == "@usecs" and usecs.kind == "hist" and usecs.count and usecs.histogram
    assert sum(f.count or 0 for f in usecs.per_host) == usecs.count


async def test_tool_that_cannot_run_is_refused(rig: Rig, runtime: Runtime) -> None:
    with pytest.raises(UsageError, match=r"tool tcpretrans.bt cannot run on this host: uses kprobes.*web\[01-02\]"):
        await bpftrace_run(runtime, "web01:web02", tool="tcpretrans.bt", duration=1)
    assert tracers(rig) == []


async def test_probe_that_cannot_attach_fails_per_host(rig: Rig, runtime: Runtime) -> None:
    result = await bpftrace_run(runtime, "web01:web02", program="kprobe:vfs_read { @ = count(); }", duration=1)
    assert result.summary.failed == 2 and result.errors
    assert "Error attaching probe: 'kprobe:vfs_read'" in result.errors[0].message, result.errors
    assert tracers(rig) == []


async def test_text_output_grouped(runtime: Runtime) -> None:
    result = await bpftrace_run(
        runtime, THREE, program='BEGIN { printf("hello %s\\n", str($1)); exit(); }', args={"1": "fleet"}
    )
    [group] = result.groups
    assert group.hosts == "web[01-03]" and "hello fleet" in (group.output or "") and result.maps == []


@pytest.mark.parametrize(
    "program, words",
    [
        ("BEGIN {\n  @x = count(\n}", ["line 3", "column", "syntax error"]),
        ("tracepoint:nosuch:probe { @ = count(); }", ["line 1", "tracepoint not found", "bpftrace_probes"]),
    ],
)
async def test_bad_programs_are_tool_errors(rig: Rig, runtime: Runtime, program: str, words: list[str]) -> None:
    with pytest.raises(UsageError) as caught:
        await bpftrace_run(runtime, "web01:web02", program=program, duration=5)
    for word in words:
        assert word in str(caught.value), caught.value
    assert "web[01-02]" in str(caught.value) and tracers(rig) == []


async def test_bad_requests_are_tool_errors(rig: Rig, runtime: Runtime) -> None:
    with pytest.raises(UsageError, match="no bpftrace tool 'nosuch'.*bpftrace_tools"):
        await bpftrace_run(runtime, "web01", tool="nosuch")
    with pytest.raises(UsageError, match="over this host's bpftrace cap of 60s"):
        await bpftrace_run(runtime, "web01", tool="runqlat", duration=61)
    with pytest.raises(UsageError, match="exactly one of program or tool"):
        await bpftrace_run(runtime, "web01")
    with pytest.raises(UsageError, match="has no argument"):
        await bpftrace_run(runtime, "web01", tool="runqlat", args={"bogus": 1})
    with pytest.raises(UsageError, match="characters other than"):
        await bpftrace_run(runtime, "web01", program="BEGIN { exit(); }", args={"1": "a b"})
    assert tracers(rig) == []


@pytest.mark.parametrize(
    "program, construct",
    [
        ('BEGIN { system("id"); }', "system()"),
        ('BEGIN { signal("KILL"); }', "signal()"),
        ("kprobe:vfs_read { override(-1); }", "override()"),
        ('BEGIN { cat("/etc/shadow"); }', "cat()"),
        ('BEGIN { skboutput("x.pcap", 0, 0, 0); }', "skboutput()"),
        ("watchpoint:0x10000000:8:w { @ = count(); }", "watchpoint probes"),
        ('#include "/etc/shadow"\nBEGIN { exit(); }', "#include"),
    ],
)
async def test_unsafe_programs_refused(rig: Rig, runtime: Runtime, program: str, construct: str) -> None:
    with pytest.raises(UsageError) as caught:
        await bpftrace_run(runtime, "web01", program=program, duration=5)
    text = str(caught.value)
    assert construct in text and "refused" in text and ("because" in text or ":" in text), text
    assert tracers(rig) == []


async def test_duration_ends_the_run(rig: Rig, runtime: Runtime) -> None:
    # No exit() in the program: the duration alone must end it, with its maps printed.
    result = await bpftrace_run(
        runtime, "web01", program="tracepoint:sched:sched_switch { @switches = count(); }", duration=2
    )
    if result.job_id:  # a slow machine: collect it
        result = await bpftrace_result(runtime, result.job_id, wait=30)
    assert result.summary.ok == 1, result
    [switches] = result.maps
    assert switches.value and switches.value > 0
    assert tracers(rig) == []


async def test_cancel_leaves_no_bpftrace(rig: Rig, runtime: Runtime) -> None:
    job_id = await started_job(runtime, "web01:web02", "tracepoint:sched:sched_switch { @ = count(); }", 50)
    assert len(tracers(rig)) == 2
    assert (await job_status(runtime, job_id)).summary.running == 2
    cancelled = await job_cancel(runtime, job_id)
    assert cancelled.summary.ok == 2, cancelled
    assert tracers(rig) == []


async def test_dropped_connection_leaves_no_bpftrace(rig: Rig, rig_settings) -> None:  # type: ignore[no-untyped-def]
    rt = Runtime.create(rig_settings)
    await started_job(rt, "web04", "tracepoint:sched:sched_switch { @ = count(); }", 50)
    assert len(tracers(rig)) == 1
    await rt.close()  # the SSH connection goes away: the agent sees EOF and kills its jobs
    assert await wait_until(lambda: not tracers(rig)), "bpftrace outlived its agent"
    assert await wait_until(lambda: not agent_pids(str(rig.base)))
