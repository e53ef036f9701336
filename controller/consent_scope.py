"""Which tool calls are heavy enough to ask the person first, and the exact question to ask.

Reading a live kernel (every process's secrets), a capture on more than consent_hosts hosts or
longer than consent_seconds, a CPU profile above consent_hz, a debuginfod download over
consent_bytes. The question names the exact scope ("capture `port 443` on web[001-180] for 60 s:
approve?"); the terminal command is what a person runs instead when the client cannot ask.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from crashfleet.agent import protocol

from .errors import CrashfleetError
from .grouping import fold
from .runtime import Runtime
from .tools.dumps import dump_dirs


@dataclass(frozen=True)
class Scope:
    question: str  # what the person is asked, the exact scope in it
    why: str  # which threshold it crosses
    hosts: str  # folded
    command: str  # the same action from a terminal


Check = Callable[[Runtime, dict[str, Any]], Awaitable[Scope | None]]


async def scope(rt: Runtime, tool: str, args: dict[str, Any]) -> Scope | None:
    """The consent this call needs, or None. Arguments the tool will refuse anyway need none."""
    check = CHECKS.get(tool)
    if check is None:
        return None
    try:
        return await check(rt, args)
    except (CrashfleetError, TypeError, ValueError, KeyError):
        return None  # the tool says what is wrong with them


async def _capture(rt: Runtime, args: dict[str, Any]) -> Scope | None:
    hosts = [h.name for h in rt.fleet.match(str(args["pattern"]))]
    duration = float(args.get("duration", 30))
    settings = rt.settings
    if not hosts or (len(hosts) <= settings.consent_hosts and duration <= settings.consent_seconds):
        return None
    why = []
    if len(hosts) > settings.consent_hosts:
        why.append(f"{len(hosts)} hosts, over consent_hosts ({settings.consent_hosts})")
    if duration > settings.consent_seconds:
        why.append(f"{duration:g} s, over consent_seconds ({settings.consent_seconds:g})")
    question = f"capture {_what(args)} on {fold(hosts)} for {duration:g} s: approve?"
    return Scope(question, "; ".join(why), fold(hosts), _capture_command(args, duration))


def _what(args: dict[str, Any]) -> str:
    if args.get("filter"):
        return f"`{args['filter']}`"
    mode, target = args.get("mode") or "auto", args.get("target")
    return (
        f"{mode} traffic"
        + (f" of {target}" if target else "")
        + (f" on {args['interface']}" if args.get("interface") else "")
    )


def _capture_command(args: dict[str, Any], duration: float) -> str:
    argv = ["crashfleet", "capture", str(args["pattern"]), "-d", f"{duration:g}"]
    for name in ("mode", "target", "interface", "filter"):
        if args.get(name) is not None:
            argv += [f"--{name}", str(args[name])]
    return shlex.join(argv)


async def _profile(rt: Runtime, args: dict[str, Any]) -> Scope | None:
    hz, duration = int(args.get("hz", 49)), float(args.get("duration", 10))
    if hz <= rt.settings.consent_hz:
        return None
    hosts = fold(h.name for h in rt.fleet.match(str(args.get("pattern", "all"))))
    question = f"sample every CPU's kernel stack at {hz} Hz on {hosts} for {duration:g} s: approve?"
    return Scope(
        question, f"{hz} Hz, over consent_hz ({rt.settings.consent_hz})", hosts, call_command("profile_run", args)
    )


async def _crash_open(rt: Runtime, args: dict[str, Any]) -> Scope | None:
    host = rt.fleet.host(str(args["host"]))
    if args.get("live"):
        question = f"read the live kernel memory of {host.name} (/proc/kcore: every process's secrets): approve?"
        target = f"{host.user}@{host.address}" if host.user else host.address
        command = shlex.join(["ssh", "-t", *(["-p", str(host.port)] if host.port else []), target, "sudo", "drgn"])
        return Scope(question, "a live kernel is read", host.name, command)
    if args.get("vmlinux"):
        return None
    listing: protocol.DumpList = await rt.fleet.call(host, protocol.DUMPS_LIST, {"dirs": dump_dirs(host)})
    return download_scope(host.name, args.get("vmcore"), listing, rt.settings.consent_bytes, args)


def download_scope(
    host: str, vmcore: str | None, listing: protocol.DumpList, limit: int, args: dict[str, Any]
) -> Scope | None:
    """A debuginfod download crash_open would start for this dump, over `limit` bytes. The agent
    learns a download's size only when it starts (the server's Content-Length): unknown counts as over."""
    dumps = [d for d in listing["dumps"] if vmcore is None or d["path"] == vmcore or d["path"].endswith(f"/{vmcore}")]
    if not dumps:
        return None
    debuginfo = dumps[0].get("debuginfo") or {}
    if debuginfo.get("source") != "debuginfod" or debuginfo.get("present") or debuginfo.get("cached"):
        return None
    size = debuginfo.get("size")  # not reported by agents yet
    if isinstance(size, int) and size <= limit:
        return None
    servers = ", ".join(debuginfo.get("servers") or []) or "the host's debuginfod servers"
    how_big = f"{size >> 20} MiB" if isinstance(size, int) else "size unknown until it starts; a vmlinux is ~0.5 GB"
    question = (
        f"download the vmlinux of build id {dumps[0].get('build_id')} ({how_big}) from {servers} "
        f"to {host} for {dumps[0]['path']}: approve?"
    )
    return Scope(
        question, f"a debuginfod download over consent_bytes ({limit})", host, call_command("crash_open", args)
    )


def call_command(tool: str, args: dict[str, Any]) -> str:
    """`crashfleet call TOOL 'ARGS'`: the same plain tool function, run by a person at a terminal."""
    return shlex.join(["crashfleet", "call", tool, json.dumps(args, sort_keys=True)])


CHECKS: dict[str, Check] = {"capture_start": _capture, "profile_run": _profile, "crash_open": _crash_open}
