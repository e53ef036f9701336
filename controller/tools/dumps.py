"""Kernel crash dumps where they lie: discovery, crash and drgn sessions, analysis scripts, triage."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from crashfleet.agent import protocol
from crashfleet.agent.domains.dumps import describe_script
from crashfleet.inventory import Host

from ..errors import AgentCallError, HostError, UsageError
from ..grouping import HostOutcome, fold, group_outcomes
from ..models import FanoutResult
from ..progress import Progress
from ..registry import tool
from ..runtime import Runtime
from ..wiring import READ, REMOTE_READ, STARTS_WORK, STOPS_WORK, Pattern
from . import dump_listing
from .common import fanned, output_ref, single, split_ref
from .dumps_models import (
    CommandResult,
    CrashOpen,
    ScriptInfo,
    ScriptList,
    SessionInfo,
    SessionList,
)

SessionId = Annotated[str, Field(description="HOST:ID from crash_open")]
Seconds = Annotated[float, Field(description="per-command timeout; the command is interrupted after it")]
DUMP_DIRS_VAR = "crashfleet_dump_dirs"  # inventory var: this host's dump dirs (the agent's policy still decides)
OPEN_TIMEOUT = 600.0  # crash reads all of vmlinux's DWARF: slow on big kernels and busy hosts
FETCH_WAIT = 20.0  # seconds one dumps.open call waits on a debuginfod download before it reports progress
# A cancelled command's session is free again once crash is back at its prompt: at once after a ^C,
# or after a restart of crash when ^C did not stop it (a crash start: a minute on a busy host).
INTERRUPTED_WAIT = 90.0


def _split_session(session_id: str) -> tuple[str, str]:
    return split_ref(session_id, "session_id", "crash_open or sessions_list")


def dump_dirs(host: Host) -> list[str] | None:
    dirs = host.vars.get(DUMP_DIRS_VAR)
    if dirs is None:
        return None
    if isinstance(dirs, str):
        dirs = [dirs]
    return [str(d) for d in dirs]


async def _call(
    rt: Runtime,
    host: Host,
    method: str,
    params: dict[str, Any],
    session_id: str | None = None,
    keep: tuple[type[AgentCallError], ...] = (),
) -> Any:
    """An agent call whose errors name the session (or host) and what to do; errors of the
    `keep` classes stay as they are, for the caller to catch."""
    try:
        return await rt.fleet.call(host, method, params)
    except keep:
        raise
    except AgentCallError as exc:
        where = f"session {session_id}" if session_id else host.name
        raise UsageError(f"{where}: {exc.message}", exc.hint) from exc


@tool("Find crash dumps", "Find kernel crash dumps on hosts: format, kernel, debuginfo, crash title.", REMOTE_READ)
async def dumps_list(rt: Runtime, pattern: Pattern = "all", progress: Progress | None = None) -> FanoutResult:
    """Each host's dumps (newest first) with format, arch, release, debuginfo and the crash's title
    (from the log kdump saved); hosts whose listings differ only in host names and times are one group."""

    async def scan(host: Host) -> HostOutcome:
        found: protocol.DumpList = await rt.fleet.call(host, protocol.DUMPS_LIST, {"dirs": dump_dirs(host)})
        return dump_listing.outcome(host, found)

    def assemble(outcomes: list[HostOutcome], elapsed: int, final: bool) -> FanoutResult:
        return group_outcomes(outcomes, elapsed, rt.settings.page_chars, merge=dump_listing.merge)

    hosts = rt.fleet.match(pattern)
    return await fanned(rt, "dumps_list", pattern, hosts, scan, assemble, progress=progress)


def _session(host: str, info: protocol.DumpSession) -> SessionInfo:
    return SessionInfo(
        session_id=f"{host}:{info['session_id']}",
        host=host,
        vmcore=info["vmcore"],
        vmlinux=info["vmlinux"],
        release=info.get("release"),
        arch=info.get("arch"),
        format=info.get("format"),
        minimal=info.get("minimal", False),
        idle_s=round(time.time() - info["last_used"], 1) if info.get("last_used") else None,
        crash_pid=info.get("crash_pid"),
        drgn_pid=info.get("drgn_pid"),
    )


def _result(host: str, command: str, r: protocol.CommandReply) -> CommandResult:
    page = r["page"]
    return CommandResult(
        session_id=f"{host}:{r['session_id']}",
        command=command,
        ended=r.get("ended", "done"),
        text=page["text"],
        output_id=output_ref(host, r["output_id"]),
        total_lines=page["total_lines"],
        next_cursor=page.get("next_cursor"),
        truncated=page.get("truncated", False),
        note=r.get("note"),
        cap=r.get("cap"),
        ok=r.get("ok"),
        value=r.get("value"),
        error=r.get("error"),
    )


@tool(
    "Open a crash dump",
    "Open (or reuse) a crash session on a host's dump (null vmcore = newest; live = the running "
    "kernel; modules = the modules' debuginfo from debuginfod too).",
    STARTS_WORK,
)
async def crash_open(
    rt: Runtime,
    host: str,
    vmcore: str | None = None,
    vmlinux: str | None = None,
    progress: Progress | None = None,
    live: bool = False,
    modules: bool = False,
) -> CrashOpen:
    """Open (or reuse) a crash session on a dump; null vmcore = the newest, null vmlinux = matched
    (locally, else fetched by build id from debuginfod: waited for, with progress); modules: the
    loaded modules' debuginfo too, by build id from debuginfod, for crash."""
    target = rt.fleet.host(host)
    params = {
        "vmcore": vmcore,
        "vmlinux": vmlinux,
        "dirs": dump_dirs(target),
        "page_bytes": rt.settings.page_chars,
        "fetch_wait": FETCH_WAIT,
    }
    if live:  # the running kernel (/proc/kcore); the host's policy key live_kernel decides
        params["live"] = True
    if modules:
        params["modules"] = True

    async def opening(report: Progress | None) -> CrashOpen:
        try:
            r = await asyncio.wait_for(_open(rt, target, params, report), OPEN_TIMEOUT)
        except TimeoutError:
            raise HostError(
                f"crash did not open the dump on {host} within {OPEN_TIMEOUT:g} s",
                "the host may be overloaded; sessions_list shows whether it opened since",
            ) from None
        return CrashOpen(
            session=_session(host, r),
            reused=r["reused"],
            summary=_result(host, r.get("command", "sys"), r),
            notes=r.get("notes") or [],
            warnings=r.get("warnings") or [],
            modules_loaded=r.get("modules", {}).get("loaded"),
            modules_failed=r.get("modules", {}).get("failed") or {},
        )

    def still(job_id: str) -> CrashOpen:
        return CrashOpen(job_id=job_id, note=f"still opening on {host}: job_status('{job_id}') gives the session")

    return await single(rt, "crash_open", host, opening, still, progress)


async def _open(rt: Runtime, target: Host, params: dict[str, Any], progress: Progress | None) -> protocol.DumpOpen:
    """dumps.open, again while the agent downloads the vmlinux (each call waits FETCH_WAIT on it)."""
    while True:
        r: protocol.DumpOpen = await _call(rt, target, protocol.DUMPS_OPEN, params)
        if not r.get("fetching"):
            return r
        if progress is not None:
            got = r.get("bytes") or 0
            await progress(
                got >> 20,
                0,
                f"{target.name}: fetching {r.get('what', 'vmlinux')} {r['build_id']} from debuginfod "
                f"({got >> 20} MiB so far)",
            )


@tool("List dump sessions", "List open dump sessions.", READ)
async def sessions_list(rt: Runtime) -> SessionList:
    """Open sessions on every host the controller is connected to."""
    links = rt.fleet.connected()
    answers = await asyncio.gather(
        *(rt.fleet.call(rt.fleet.host(n), protocol.DUMPS_SESSIONS) for n in links), return_exceptions=True
    )
    sessions: list[SessionInfo] = []
    failed: list[str] = []
    for name, got in zip(links, answers):
        if isinstance(got, BaseException):
            failed.append(name)
            continue
        sessions += [_session(name, s) for s in got["sessions"]]
    note = f"could not ask {fold(failed)}" if failed else None
    return SessionList(sessions=sessions, note=note)


@tool("Close a dump session", "Close a dump session and its processes.", STOPS_WORK)
async def session_close(rt: Runtime, session_id: SessionId) -> SessionInfo:
    """Close a session: its crash and drgn processes end."""
    host, sid = _split_session(session_id)
    info = await _call(rt, rt.fleet.host(host), protocol.DUMPS_CLOSE, {"session_id": sid}, session_id)
    return _session(host, info)


@tool("Run a crash command", "Run a crash command (pipes to grep/head/tail/wc allowed) in a session.", REMOTE_READ)
async def crash_run(rt: Runtime, session_id: SessionId, command: str, timeout: Seconds = 60.0) -> CommandResult:
    """One crash command; one still running after command_wait becomes a job (job_status, job_cancel).
    A cancelled call interrupts the command on the host (the session lives on)."""
    return await single(
        rt,
        "crash_run",
        _split_session(session_id)[0],
        lambda _: _crash_run(rt, session_id, command, timeout),
        lambda job_id: _running(session_id, command, job_id),
    )


async def _crash_run(rt: Runtime, session_id: str, command: str, timeout: float) -> CommandResult:
    host, sid = _split_session(session_id)
    target = rt.fleet.host(host)
    wait = rt.settings.command_wait
    params: dict[str, Any] = {
        "session_id": sid,
        "command": command,
        "timeout": timeout,
        "page_bytes": rt.settings.page_chars,
    }
    if timeout > wait:  # else the command's own timeout ends it soon enough: no job
        params["wait"] = wait
    call = asyncio.ensure_future(_call(rt, target, protocol.DUMPS_CRASH, params, session_id))
    try:
        r: protocol.CommandReply = await asyncio.shield(call)
    except asyncio.CancelledError:
        await rt.fleet.call(target, protocol.DUMPS_INTERRUPT, {"session_id": sid})
        await asyncio.wait([call], timeout=INTERRUPTED_WAIT)  # the agent answers once the session is free
        raise
    if r.get("state") == "running":
        job = rt.jobs.add("crash_run", host, {host: r["job_id"]}, session=session_id, command=command)
        return CommandResult(
            session_id=session_id,
            command=command,
            ended="running",
            text="",
            output_id=output_ref(host, r["output_id"]),
            total_lines=0,
            job_id=job.job_id,
            note=f"still running after {wait:g} s: job_status('{job.job_id}') for its result, "
            f"job_cancel('{job.job_id}') to interrupt it",
        )
    return _result(host, command, r)


def _running(session_id: str, command: str, job_id: str) -> CommandResult:
    """A command still going when the call had to answer: its job gives the answer."""
    return CommandResult(
        session_id=session_id,
        command=command,
        ended="running",
        text="",
        output_id=None,
        total_lines=0,
        job_id=job_id,
        note=f"still running when the call had to answer: job_status('{job_id}') gives its answer",
    )


@tool("Run drgn code", "Run drgn Python in a session (prog ready, Linux helpers imported).", REMOTE_READ)
async def drgn_run(rt: Runtime, session_id: SessionId, code: str, timeout: Seconds = 60.0) -> CommandResult:
    """Python in the session's drgn worker (`prog` ready, helpers imported); the namespace persists."""
    host, sid = _split_session(session_id)
    params = {"session_id": sid, "code": code, "timeout": timeout, "page_bytes": rt.settings.page_chars}

    async def run(_: Progress | None) -> CommandResult:
        return _result(host, "drgn", await _call(rt, rt.fleet.host(host), protocol.DUMPS_DRGN, params, session_id))

    return await single(rt, "drgn_run", host, run, lambda job_id: _running(session_id, "drgn", job_id))


def local_scripts(rt: Runtime) -> dict[str, Path]:
    """Scripts in the CRASHFLEET_DRGN_SCRIPTS dirs (the controller's), by name."""
    found: dict[str, Path] = {}
    for directory in rt.settings.drgn_script_dirs():
        for path in sorted(directory.glob("*.py")):
            found.setdefault(path.stem, path)
    return found


@tool("List analysis scripts", "List drgn analysis scripts available for a host.", READ)
async def analysis_scripts(rt: Runtime, host: str) -> ScriptList:
    r: protocol.DumpScripts = await _call(rt, rt.fleet.host(host), protocol.DUMPS_SCRIPTS, {})
    scripts = [ScriptInfo(name=s["name"], description=s["description"], source="bundled") for s in r["scripts"]]
    bundled = {s.name for s in scripts}
    for name, path in local_scripts(rt).items():
        if name not in bundled:
            scripts.append(
                ScriptInfo(name=name, description=describe_script(path.read_text()), source=str(path.parent))
            )
    return ScriptList(host=host, scripts=scripts, drgn_code=r["drgn_code"])


@tool("Run an analysis script", "Run a drgn analysis script in a session.", REMOTE_READ, hide=("timeout",))
async def analysis_run(
    rt: Runtime, session_id: SessionId, name: str, args: list[str] | None = None, timeout: float = 120.0
) -> CommandResult:
    """Run an analysis script in the session; bundled names win over CRASHFLEET_DRGN_SCRIPTS ones."""
    host, _ = _split_session(session_id)

    async def run(_: Progress | None) -> CommandResult:
        return _result(host, f"script {name}", await _script(rt, session_id, name, args, timeout))

    return await single(rt, "analysis_run", host, run, lambda job_id: _running(session_id, f"script {name}", job_id))


async def _script(
    rt: Runtime, session_id: str, name: str, args: list[str] | None, timeout: float
) -> protocol.CommandReply:
    host, sid = _split_session(session_id)
    target = rt.fleet.host(host)
    params: dict[str, Any] = {
        "session_id": sid,
        "name": name,
        "args": args or [],
        "timeout": timeout,
        "page_bytes": rt.settings.page_chars,
    }
    scripts: protocol.DumpScripts = await _call(rt, target, protocol.DUMPS_SCRIPTS, {})
    bundled = {s["name"] for s in scripts["scripts"]}
    if name not in bundled:
        path = local_scripts(rt).get(name)
        if path is None:
            raise UsageError(f"no analysis script {name!r}", f"analysis_scripts('{host}') lists them")
        params["code"] = path.read_text()
    reply: protocol.CommandReply = await _call(rt, target, protocol.DUMPS_SCRIPT, params, session_id)
    return reply


@tool(
    "Run an analysis script fleet-wide",
    "Run one analysis script in many sessions (one per host); hosts with the same output grouped.",
    REMOTE_READ,
    hide=("timeout",),
)
async def analysis_fleet(
    rt: Runtime,
    sessions: Annotated[list[str], Field(description="HOST:ID each")],
    name: str,
    args: list[str] | None = None,
    timeout: float = 120.0,
    progress: Progress | None = None,
) -> FanoutResult:
    """One analysis script in many sessions at once (one per host); hosts whose whole output is
    the same are one group, so identical kernels cost one answer."""
    by_host: dict[str, str] = {}
    for session_id in sessions:
        host, _ = _split_session(session_id)
        if host in by_host:
            raise UsageError(
                f"two sessions on {host} ({by_host[host]}, {session_id})",
                "give one session per host: the answer is grouped by host",
            )
        by_host[host] = session_id
    if not by_host:
        raise UsageError(
            "no sessions given",
            "crash_open (live=true for running kernels) on each host first; sessions_list shows the open ones",
        )
    if name not in {s.name for s in (await analysis_scripts(rt, next(iter(by_host)))).scripts}:
        raise UsageError(f"no analysis script {name!r}", f"analysis_scripts('{next(iter(by_host))}') lists them")

    async def run(host: Host) -> HostOutcome:
        r = await _script(rt, by_host[host.name], name, args, timeout)
        page = r["page"]
        ok = bool(r.get("ok"))
        # Grouped by the whole output's hash (the agent's), not the first page alone.
        return HostOutcome(
            host.name,
            "ok" if ok else "failed",
            key=f"{ok}:{r.get('sha256')}",
            output=page["text"],
            output_id=output_ref(host.name, r["output_id"]),
            next_cursor=page.get("next_cursor"),
            total_lines=page["total_lines"],
            message=None if ok else f"{name} failed: {r.get('error')}",
            hint=None if ok else f"output_page('{output_ref(host.name, r['output_id'])}') has its stderr",
            data={"session": by_host[host.name]},
        )

    def assemble(outcomes: list[HostOutcome], elapsed: int, final: bool) -> FanoutResult:
        return group_outcomes(outcomes, elapsed, rt.settings.page_chars)

    hosts = [rt.fleet.host(h) for h in by_host]
    pattern = ",".join(by_host)
    return await fanned(rt, "analysis_fleet", pattern, hosts, run, assemble, deadline=timeout + 30.0, progress=progress)


__all__ = [
    "analysis_fleet",
    "analysis_run",
    "analysis_scripts",
    "crash_open",
    "crash_run",
    "drgn_run",
    "dumps_list",
    "session_close",
    "sessions_list",
]
