"""Jobs, paging and search over real SSH; nothing may be left running."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from crashfleet.controller.errors import UsageError
from crashfleet.controller.runtime import Runtime
from crashfleet.controller.tools.fleet import fleet_run
from crashfleet.controller.tools.jobs import job_cancel, job_status, jobs_list
from crashfleet.controller.tools.output import output_page, output_search
from tests.helpers import cwd, pids_matching, wait_until
from tests.rig import Rig


def samplers(rig: Rig) -> list[int]:
    """vmstat processes started by this rig's agents (their cwd is the agent's work dir)."""
    return [pid for pid in pids_matching("vmstat", "-w") if cwd(pid).startswith(str(rig.base))]


async def test_short_command_returns_grouped_output(runtime: Runtime) -> None:
    result = await fleet_run(runtime, "web01:web02:web03", "uname")
    assert result.summary.ok == 3 and result.job_id is None
    [group] = result.groups
    assert group.hosts == "web[01-03]" and os.uname().release in (group.output or "")
    assert len(group.output_ids) == 3 and group.output_ids[0].startswith("web01:")


async def test_job_cancel_leaves_no_process(rig: Rig, runtime: Runtime) -> None:
    runtime.settings.command_wait = 0.5
    result = await fleet_run(runtime, "web01:web02", "vmstat", duration=300)
    assert result.summary.running == 2 and result.job_id
    assert await wait_until(lambda: len(samplers(rig)) == 2), "vmstat did not start on both hosts"
    assert [j.job_id for j in jobs_list(runtime).jobs] == [result.job_id]

    status = await job_status(runtime, result.job_id)
    assert status.summary.running == 2
    cancelled = await job_cancel(runtime, result.job_id)
    assert cancelled.summary.ok == 2, cancelled
    assert "procs" in (cancelled.groups[0].output or "")  # what vmstat printed before the cancel is kept
    assert samplers(rig) == [], "cancel left vmstat running"
    assert jobs_list(runtime).jobs[0].state == "cancelled"


async def test_duration_ends_a_sampler(runtime: Runtime) -> None:
    runtime.settings.command_wait = 10
    result = await fleet_run(runtime, "web01", "vmstat", duration=2)
    assert result.summary.ok == 1 and result.job_id is None
    output = result.groups[0].output or ""
    assert output.count("\n") >= 3, output  # header lines plus at least one sample


async def test_agent_dying_mid_call_reports_failed_with_stderr(rig: Rig, runtime: Runtime) -> None:
    runtime.settings.command_wait = 5
    link = await runtime.fleet.link(runtime.fleet.host("web04"))
    call = asyncio.ensure_future(fleet_run(runtime, "web04", "vmstat", duration=30))
    assert await wait_until(lambda: len(samplers(rig)) == 1)
    os.kill(link.facts["agent"]["pid"], signal.SIGTERM)
    result = await call
    assert not link.alive  # the agent said it was stopping before it answered: no call goes to it now
    assert result.summary.failed == 1, result
    [error] = result.errors
    # Either the agent answered before it exited (job aborted) or the link saw it die: both name the signal.
    assert "signal 15" in error.message + (error.stderr_tail or ""), error
    assert await wait_until(lambda: not samplers(rig))
    again = await fleet_run(runtime, "web04", "uname")  # the next call reconnects
    assert again.summary.ok == 1


async def test_paging_and_search_on_the_host(runtime: Runtime) -> None:
    runtime.settings.page_tokens = 500  # 2,000 chars a page: ps output spans several
    result = await fleet_run(runtime, "web02", "ps")
    output_id = result.groups[0].output_ids[0]
    first = await output_page(runtime, output_id)
    assert (first.start_line == 1 and first.text.startswith("    PID")) or "PID" in first.text.splitlines()[0]
    assert first.next_cursor and first.total_lines > first.end_line
    text, page = first.text, first
    while page.next_cursor:
        page = await output_page(runtime, output_id, page.next_cursor)
        text += page.text
    assert page.end_line == page.total_lines and text.count("\n") == page.total_lines
    found = await output_search(runtime, output_id, r"crashfleet-agent-\w+\.pyz", context=1)
    assert found.matches and all("crashfleet-agent-" in m.text for m in found.matches)
    assert all(len(m.before) <= 1 and len(m.after) <= 1 for m in found.matches)


async def test_bad_output_references_say_what_is_wrong(runtime: Runtime) -> None:
    with pytest.raises(UsageError, match="HOST:ID"):
        await output_page(runtime, "no-colon")
    with pytest.raises(UsageError, match="no host 'nohost'"):
        await output_page(runtime, "nohost:0123456789")
    with pytest.raises(UsageError, match="unknown|no output"):
        await output_page(runtime, "web01:ffffffffff")
    result = await fleet_run(runtime, "web01", "uname")
    output_id = result.groups[0].output_ids[0]
    with pytest.raises(UsageError, match="cursor"):
        await output_page(runtime, output_id, "garbage-cursor")
    with pytest.raises(UsageError, match="regular expression|regex"):
        await output_search(runtime, output_id, "([unclosed")
    with pytest.raises(UsageError, match="unknown job_id"):
        await job_status(runtime, "J999")
    with pytest.raises(UsageError, match="unknown command"):
        await fleet_run(runtime, "web01", "rm")


async def test_short_timeout_on_first_contact_still_registers_the_job(rig: Rig, rig_settings) -> None:  # type: ignore[no-untyped-def]
    """Connecting eats into the deadline: the wait must shrink so the job id comes back, never orphaned."""
    rt = Runtime.create(rig_settings)
    try:
        result = await fleet_run(rt, "web05", "vmstat", duration=30, timeout=2)
        assert result.summary.running == 1 and result.job_id, result
        assert await wait_until(lambda: len(samplers(rig)) == 1)
        await job_cancel(rt, result.job_id)
        assert samplers(rig) == []
    finally:
        await rt.close()
