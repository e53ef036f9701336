"""Crash dumps over real SSH: real vmcores, the real crash and drgn, sessions shared per module."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import pytest

from crashfleet.controller.errors import CrashfleetError, UsageError
from crashfleet.controller.tools import dumps as d
from crashfleet.controller.tools import jobs as j
from crashfleet.controller.tools import output as o
from crashfleet.controller.tools.triage import crash_triage
from tests.dumps.conftest import DumpFleet

pytestmark = [pytest.mark.ssh, pytest.mark.asyncio(loop_scope="module")]


def alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


async def test_dumps_list_finds_every_layout_and_format(drt: Any, dump_fleet: DumpFleet) -> None:
    result = await d.dumps_list(drt, "all")
    by_host = {}
    for group in result.groups:
        by_host[group.hosts] = group
    assert result.summary.ok == 6, result.errors
    data = {}
    for group in result.groups:
        assert group.count == 1  # every host has its own dir, so its own answer
        data[group.hosts] = group.data
    release = dump_fleet.fixture.release
    for host in ("web01", "web02", "web03", "web04"):
        dumps = data[host]["dumps"]
        assert [x["path"] for x in dumps] == [str(dump_fleet.paths[host])]
        assert dumps[0]["format"] == "elf" and dumps[0]["arch"] == "x86_64" and dumps[0]["release"] == release
        assert dumps[0]["debuginfo"] == "local", dumps[0]["debuginfo"]
        assert dumps[0]["build_id"]
    assert data["web05"]["dumps"] == []
    formats = {x["path"]: (x["format"], x["incomplete"]) for x in data["web06"]["dumps"]}
    assert formats == {
        str(dump_fleet.paths["web06-kdump"]): ("kdump-compressed", False),
        str(dump_fleet.paths["web06-flat"]): ("flattened", False),
        str(dump_fleet.paths["web06-cut"]): ("elf", True),
    }  # shorter than its headers say
    assert all(x["release"] == release for x in data["web06"]["dumps"])
    assert data["web01"]["drgn"] is True


async def test_open_run_page_search_and_reuse(drt: Any, dump_fleet: DumpFleet) -> None:
    opened = await d.crash_open(drt, "web01")
    assert not opened.reused
    assert opened.session.vmcore == str(dump_fleet.paths["web01"])
    assert "sysrq triggered crash" in opened.summary.text
    assert alive(opened.session.crash_pid)
    again = await d.crash_open(drt, "web01", vmcore=str(dump_fleet.paths["web01"]))
    assert again.reused and again.session.session_id == opened.session.session_id
    assert again.session.crash_pid == opened.session.crash_pid

    bt = await d.crash_run(drt, opened.session.session_id, "bt")
    assert bt.ended == "done"
    assert "sysrq_handle_crash" in bt.text and "panic" in bt.text
    page = await o.output_page(drt, bt.output_id)
    assert page.text == bt.text and page.finished
    found = await o.output_search(drt, bt.output_id, r"sysrq_handle_crash|write_sysrq_trigger")
    assert len(found.matches) == 2

    piped = await d.crash_run(drt, opened.session.session_id, "bt | grep -c sysrq")
    assert piped.text.strip() == "3"  # sysrq_handle_crash, __handle_sysrq, write_sysrq_trigger
    head = await d.crash_run(drt, opened.session.session_id, "log | grep -i 'crashfleet fixture' | tail -n 1")
    assert head.text.count("\n") == 1 and "panic sysrq" in head.text
    listed = await d.sessions_list(drt)
    assert opened.session.session_id in {s.session_id for s in listed.sessions}


async def test_crash_drift_is_surfaced_at_open(drt: Any) -> None:
    """crash 8.0.2 misses most of this 6.1 kernel's tasks: the open says so, with drgn's count."""
    opened = await d.crash_open(drt, "web01")
    assert len(opened.warnings) == 1, opened.warnings
    warning = opened.warnings[0]
    counts = re.search(r"counts (\d+) tasks where drgn counts (\d+)", warning)
    assert counts, warning
    crash_tasks, drgn_tasks = int(counts.group(1)), int(counts.group(2))
    assert re.search(rf"TASKS:\s+{crash_tasks}\n", opened.summary.text)
    assert "not found in PID hash" in warning and "drgn_run" in warning
    sid = opened.session.session_id
    seen = await d.drgn_run(drt, sid, "len(list(for_each_task(prog)))")
    assert int(seen.value or 0) + 1 == drgn_tasks > crash_tasks  # + the idle task of the one cpu
    ps = await d.crash_run(drt, sid, "ps | grep -c cf-")
    assert ps.text.strip() == "0"  # the drift is real: crash's ps misses the named tasks drgn sees
    again = await d.crash_open(drt, "web01")
    assert again.reused and again.warnings == opened.warnings


async def test_damaged_dump_opens_in_minimal_mode(drt: Any, dump_fleet: DumpFleet) -> None:
    opened = await d.crash_open(drt, "web06", vmcore=str(dump_fleet.paths["web06-cut"]))
    sid = opened.session.session_id
    try:
        assert opened.session.minimal and alive(opened.session.crash_pid)
        assert any("opened with --minimal" in n and "read error" in n for n in opened.notes), opened.notes
        assert any("cut short: 67108864 of" in n for n in opened.notes), opened.notes
        assert opened.summary.command.startswith("log") and "sysrq triggered crash" in opened.summary.text
        assert opened.warnings == []  # no task count to compare in minimal mode
        bt = await d.crash_run(drt, sid, "bt")
        assert "not available in minimal mode" in bt.text
        sym = await d.crash_run(drt, sid, "sym sysrq_handle_crash")
        assert "sysrq_handle_crash" in sym.text and sym.ended == "done"
    finally:
        await d.session_close(drt, sid)


async def test_dump_too_damaged_for_minimal_is_a_clear_error(drt: Any, dump_fleet: DumpFleet) -> None:
    cut = dump_fleet.dirs["web06"] / "vmcore-8m"
    with open(dump_fleet.fixture.vmcore("sysrq"), "rb") as src:
        cut.write_bytes(src.read(8 << 20))  # the headers and little else
    try:
        with pytest.raises(UsageError) as info:
            await d.crash_open(drt, "web06", vmcore=str(cut))
        assert "--minimal failed too" in info.value.message and "may be truncated" in info.value.message
        assert "cut short (8388608 of" in (info.value.hint or "")
        assert str(cut) not in {s.vmcore for s in (await d.sessions_list(drt)).sessions}
    finally:
        cut.unlink()


@pytest.mark.parametrize("key,fmt", [("web06-kdump", "kdump-compressed"), ("web06-flat", "flattened")])
async def test_kdump_formats_open_in_crash_and_drgn_says_it_cannot(
    drt: Any, dump_fleet: DumpFleet, key: str, fmt: str
) -> None:
    opened = await d.crash_open(drt, "web06", vmcore=str(dump_fleet.paths[key]))
    sid = opened.session.session_id
    try:
        assert opened.session.format == fmt and not opened.session.minimal
        assert "sysrq triggered crash" in opened.summary.text and "PARTIAL DUMP" in opened.summary.text
        bt = await d.crash_run(drt, sid, "bt | head -n 12")
        assert "sysrq_handle_crash" in bt.text
        assert opened.warnings and "not found in PID hash" in opened.warnings[0]  # crash's word alone
        assert "drgn counts" not in opened.warnings[0]
        with pytest.raises(UsageError) as info:
            await d.drgn_run(drt, sid, "1 + 1")
        message = info.value.message
        assert f"drgn cannot read this {fmt} dump" in message and "crash reads it" in message, message
        assert "Traceback" not in message and "crash_run" in (info.value.hint or "")
        still = await d.crash_run(drt, sid, "log | grep -c 'crashfleet fixture'")
        assert still.text.strip() == "1"
    finally:
        await d.session_close(drt, sid)


@pytest.mark.parametrize(
    "command,reason",
    [
        ("!id", "shell"),
        ("log > /tmp/crashfleet-out", "redirection"),
        ("log | sh", "only grep"),
        ("wr jiffies 0", "writes to memory"),
        ("extend /tmp/x.so", "shared objects"),
        ("shell id", "gdb"),
        ("set scroll on", "set scroll"),
        ("log | grep", "one pattern"),
    ],
)
async def test_refusals_say_why(drt: Any, command: str, reason: str) -> None:
    opened = await d.crash_open(drt, "web01")
    with pytest.raises(UsageError) as info:
        await d.crash_run(drt, opened.session.session_id, command)
    assert reason in str(info.value)
    assert not os.path.exists("/tmp/crashfleet-out")
    still = await d.crash_run(drt, opened.session.session_id, "sys | grep RELEASE")
    assert "RELEASE" in still.text


async def test_drgn_sees_the_named_processes_and_keeps_its_namespace(drt: Any) -> None:
    sid = (await d.crash_open(drt, "web01")).session.session_id
    names = await d.drgn_run(
        drt,
        sid,
        "sorted(t.comm.string_().decode() for t in for_each_task(prog) if t.comm.string_().startswith(b'cf-'))",
    )
    assert names.ok and names.value == "['cf-alpha', 'cf-beta', 'cf-gamma']"
    await d.drgn_run(drt, sid, "answer = 41")
    kept = await d.drgn_run(drt, sid, "import os\nprint('uid', os.getuid())\nanswer + 1")
    assert kept.value == "42" and "uid 65534" in kept.text  # the worker dropped root before user code
    failed = await d.drgn_run(drt, sid, "prog['no_such_symbol_here']")
    assert failed.ok is False and "could not find" in (failed.error or "") and "Traceback" in failed.text
    obj = await d.drgn_run(drt, sid, "prog['init_task'].comm")
    assert "swapper" in (obj.value or "")


async def test_analysis_scripts(drt: Any, tmp_path: Path) -> None:
    (tmp_path / "count_tasks.py").write_text('"""Count tasks."""\nprint(len(list(for_each_task(prog))), args)\n')
    drt.settings.drgn_scripts = str(tmp_path)
    try:
        listed = await d.analysis_scripts(drt, "web01")
        names = {s.name: s.source for s in listed.scripts}
        assert {"panic_summary", "dstate_stacks", "memory_summary", "top_rss"} <= set(names)
        assert names["count_tasks"] == str(tmp_path)
        sid = (await d.crash_open(drt, "web01")).session.session_id
        summary = await d.analysis_run(drt, sid, "panic_summary")
        assert "sysrq triggered crash" in summary.text and "sysrq_handle_crash" in summary.text
        top = await d.analysis_run(drt, sid, "top_rss", ["5"])
        assert "cf-alpha" in top.text or "init" in top.text
        mine = await d.analysis_run(drt, sid, "count_tasks", ["x"])
        assert mine.ok and "['x']" in mine.text
        with pytest.raises(UsageError, match="no analysis script"):
            await d.analysis_run(drt, sid, "nope")
    finally:
        drt.settings.drgn_scripts = ""


LONG = "rd -p -64 0 30000000 | grep -c zzzz"  # minutes of output through the agent's grep


async def test_timeout_and_cancel_interrupt_without_losing_the_session(drt: Any) -> None:
    opened = await d.crash_open(drt, "web01")
    sid, pid = opened.session.session_id, opened.session.crash_pid
    timed = await d.crash_run(drt, sid, LONG, timeout=2)
    assert timed.ended in ("interrupted", "restarted") and "timeout" in (timed.note or "")
    task = asyncio.ensure_future(d.crash_run(drt, sid, LONG, timeout=300))
    await asyncio.sleep(2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    after = await d.crash_run(drt, sid, "sys | grep PANIC")
    assert "sysrq" in after.text, after
    if timed.ended == "interrupted" and "restarted" not in (after.note or ""):
        assert alive(pid)  # ^C sufficed: the same crash process goes on
    else:  # crash was restarted (8.0.2 can exit after a ^C): the result said so, the session lives on
        assert "restarted" in (timed.note or "") + (after.note or "")


async def test_command_over_command_wait_becomes_a_job(drt: Any) -> None:
    opened = await d.crash_open(drt, "web01")
    sid = opened.session.session_id
    saved = drt.settings.command_wait
    drt.settings.command_wait = 0.0  # every command outlives it
    try:
        quick = await d.crash_run(drt, sid, "sys | grep RELEASE")
        assert quick.ended == "running" and quick.job_id and quick.text == ""
        for _ in range(600):
            status = await j.job_status(drt, quick.job_id)
            if not status.summary.running:
                break
            await asyncio.sleep(0.1)
        assert status.summary.ok == 1 and "RELEASE" in (status.groups[0].output or ""), status

        long = await d.crash_run(drt, sid, LONG, timeout=300)
        assert long.ended == "running" and long.job_id and f"job_cancel('{long.job_id}')" in (long.note or "")
        assert (await j.job_status(drt, long.job_id)).summary.running == 1
        assert [s.session_id for s in (await d.sessions_list(drt)).sessions if s.session_id == sid]
        cancelled = await j.job_cancel(drt, long.job_id)
        assert cancelled.summary.running == 0 and cancelled.summary.ok == 1, cancelled
    finally:
        drt.settings.command_wait = saved
    for _ in range(2):  # the session lives on, command after command (restarted if crash exits: said so)
        after = await d.crash_run(drt, sid, "sys | grep PANIC")
        assert after.ended == "done" and "sysrq" in after.text, after
    assert [s for s in (await d.sessions_list(drt)).sessions if s.session_id == sid]


async def test_bad_input_is_named_and_leaves_nothing(drt: Any, dump_fleet: DumpFleet, tmp_path: Path) -> None:
    before = {s.session_id for s in (await d.sessions_list(drt)).sessions}
    web01 = dump_fleet.dirs["web01"]
    (web01 / "notes.txt").write_text("hello\n")
    os.symlink(dump_fleet.fixture.vmcore("sysrq"), web01 / "sneaky")
    cases = [
        (dict(vmcore=str(web01 / "missing")), "no dump at"),
        (dict(vmcore=str(web01 / "notes.txt")), "not a kernel dump"),
        (dict(vmcore=str(dump_fleet.fixture.vmcore("sysrq"))), "outside this host's dump dirs"),
        (dict(vmcore=str(web01 / "sneaky")), "outside this host's dump dirs"),
        (dict(vmcore="relative/vmcore"), "not absolute"),
        (dict(vmlinux="/usr/bin/ls"), "does not match the dump"),
        (dict(vmlinux=str(dump_fleet.fixture.dir / "vmlinuz")), "not a vmlinux (ELF) file"),
        (dict(vmlinux="/nonexistent/vmlinux"), "does not exist"),
    ]
    for kwargs, message in cases:
        with pytest.raises(CrashfleetError) as info:
            await d.crash_open(drt, "web01", **kwargs)
        assert message in str(info.value), (kwargs, str(info.value))
        assert info.value.hint, kwargs
    with pytest.raises(UsageError, match="HOST:ID"):
        await d.crash_run(drt, "nocolon", "sys")
    with pytest.raises(UsageError, match="no dump session"):
        await d.crash_run(drt, "web01:s999", "sys")
    with pytest.raises(UsageError, match="no dump in"):
        await d.crash_open(drt, "web05")
    after = {s.session_id for s in (await d.sessions_list(drt)).sessions}
    assert after == before


async def test_triage_groups_hosts_by_crash(drt: Any, dump_fleet: DumpFleet) -> None:
    result = await crash_triage(drt, "web:!web06")
    assert not result.errors, result.errors
    groups = {(g.data or {}).get("title"): g for g in result.groups}
    sysrq, initexit = groups["sysrq-triggered crash"], groups["Attempted to kill init"]
    assert (sysrq.count, sysrq.hosts, initexit.hosts) == (3, "web[01-03]", "web04"), result.groups
    assert (
        sysrq.data
        and sysrq.data["culprit"] == "sysrq_handle_crash"
        and sysrq.data["sources"] == {"printk buffer (VMCOREINFO)": 3}
    ), sysrq.data
    assert initexit.data and initexit.data["frames"][0] == "do_exit", initexit.data
    assert not any("0xffff" in title for title in groups if title)
    web05 = next(g for g in result.groups if "web05" in g.hosts)
    assert not (web05.data or {}).get("vmcore")  # no dump: named from what else the machine kept, if anything
    opened = await d.crash_open(drt, "web04", vmcore=str(dump_fleet.paths["web04"]))  # the group's drill-down
    assert f"crash_open(host='web04', vmcore='{dump_fleet.paths['web04']}')" in initexit.data["drill_down"]
    drill = await d.crash_run(drt, opened.session.session_id, "bt | head -n 3")
    assert "do_exit" in drill.text or "do_group_exit" in drill.text


async def test_close_ends_the_processes(drt: Any) -> None:
    sessions = (await d.sessions_list(drt)).sessions
    assert sessions
    for s in sessions:
        closed = await d.session_close(drt, s.session_id)
        assert not alive(closed.crash_pid) and not alive(closed.drgn_pid)
    with pytest.raises(UsageError, match="no dump session"):
        await d.session_close(drt, sessions[0].session_id)
    assert (await d.sessions_list(drt)).sessions == []


async def test_crash_open_modules_through_the_controller(drt: Any) -> None:
    """modules=true reaches the agent and its answer the result (the fetch itself: test_debuginfod).
    The rig's hosts have no debuginfod server configured."""
    plain = await d.crash_open(drt, "web04")
    reused = await d.crash_open(drt, "web04", modules=True)
    assert reused.reused and reused.modules_loaded is None, reused
    assert any("opened without modules=true" in n for n in reused.notes), reused.notes
    await d.session_close(drt, plain.session.session_id)
    fresh = await d.crash_open(drt, "web04", modules=True)
    try:
        assert not fresh.reused and fresh.modules_loaded == [] and fresh.modules_failed == {}, fresh
        assert any("no debuginfod server configured" in n for n in fresh.notes), fresh.notes
    finally:
        await d.session_close(drt, fresh.session.session_id)
