"""`crashfleet`: serve MCP, or look at the fleet from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .bundle import write_bundle
from .errors import CrashfleetError, UsageError
from .models import FanoutResult
from .render import ProgressBar, render_fanout, render_hosts
from .runtime import Runtime
from .settings import Settings


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {"inventory": args.inventory} if getattr(args, "inventory", None) else {}
    try:
        settings = Settings(**overrides)
        return int(args.func(args, settings))
    except CrashfleetError as exc:
        print(f"crashfleet: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crashfleet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the MCP server (stdio by default)")
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    serve.add_argument("--port", type=int, default=None, help="HTTP port (default 8765)")
    serve.set_defaults(func=_serve)
    hosts = sub.add_parser("hosts", help="list inventory hosts matching PATTERN")
    hosts.add_argument("pattern", nargs="?", default="all")
    hosts.set_defaults(func=_hosts)
    check = sub.add_parser("check", help="connect to hosts and show their facts, grouped")
    check.add_argument("pattern", nargs="?", default="all")
    check.add_argument("--refresh", action="store_true", help="re-probe tool versions")
    check.set_defaults(func=_check)
    run = sub.add_parser("run", help="run a catalogue command (uname, dmesg, ps...) on hosts")
    run.add_argument("pattern")
    run.add_argument("name")
    run.set_defaults(func=_run)
    agent = sub.add_parser("agent", help="agent zipapp")
    agent_sub = agent.add_subparsers(dest="agent_command", required=True)
    build = agent_sub.add_parser("build", help="write the agent zipapp")
    build.add_argument("-o", "--output", type=Path, default=Path("crashfleet-agent.pyz"))
    build.set_defaults(func=_agent_build)
    bundle = sub.add_parser("bundle", help="write an MCP Bundle (.mcpb) for one-click install in Claude Desktop")
    bundle.add_argument("-o", "--output", type=Path, default=Path("crashfleet.mcpb"))
    bundle.set_defaults(func=_bundle)
    triage = sub.add_parser(
        "triage", help="what killed each host (or each kernel log file given with --log), grouped by crash title"
    )
    triage.add_argument("pattern", nargs="?", help="hosts (their newest dump, pstore or previous boot's journal)")
    triage.add_argument("--log", nargs="+", type=Path, metavar="FILE", help="kernel logs you have (console, dmesg...)")
    triage.add_argument("--json", action="store_true", help="with --log: the groups as JSON")
    triage.set_defaults(func=_triage)
    trace = sub.add_parser("trace", help="run a vetted bpftrace tool (runqlat, biolatency...) merged fleet-wide")
    trace.add_argument("pattern")
    trace.add_argument("tool")
    trace.add_argument("-d", "--duration", type=float, default=10.0)
    trace.set_defaults(func=_trace)
    capture = sub.add_parser("capture", help="capture on two hosts at once (A:B); problems and loss between them")
    capture.add_argument("pattern", help="hosts, e.g. web01:web02")
    capture.add_argument("-d", "--duration", type=float, default=10.0)
    capture.add_argument("--mode", default="auto", help="auto, host, port, web, dns, diagnosis")
    capture.add_argument("--target", default=None, help="an IP, name or port, as the mode wants")
    capture.add_argument("--interface", default=None, help="default: the one carrying the default route")
    capture.add_argument("--filter", default=None, help="a BPF filter instead of the mode's")
    capture.set_defaults(func=_capture)
    call = sub.add_parser("call", help="call one tool by name with JSON arguments, as the MCP server would")
    call.add_argument("tool", help="a tool name, e.g. capture_start")
    call.add_argument("arguments", nargs="?", default="{}", help="its arguments as a JSON object")
    call.set_defaults(func=_call)

    report = sub.add_parser("report", help="write an incident report (one HTML file) for output/job ids")
    report.add_argument("ids", nargs="+", help="output ids (HOST:ID) as tools printed them")
    report.add_argument("-t", "--title", required=True)
    report.add_argument("-o", "--output", type=Path, default=None, help="the HTML file (default: the state dir)")
    report.set_defaults(func=_report)
    boot = sub.add_parser("bootstrap", help="install the agent on one host without Ansible (the role's essentials)")
    boot.add_argument("host", help="an inventory host name")
    boot.set_defaults(func=_bootstrap)
    for sub_parser in (serve, hosts, check, run, triage, trace, capture, call, report, boot):
        sub_parser.add_argument("-i", "--inventory", type=Path, help="Ansible inventory (or CRASHFLEET_INVENTORY)")
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from .server import serve

    if args.port:
        settings.http_port = args.port
    serve(settings, args.transport)
    return 0


def _hosts(args: argparse.Namespace, settings: Settings) -> int:
    from .tools.fleet import fleet_hosts

    print(render_hosts(fleet_hosts(Runtime.create(settings), args.pattern)))
    return 0


def _check(args: argparse.Namespace, settings: Settings) -> int:
    from .tools.fleet import fleet_check

    return _fanout(settings, lambda rt: fleet_check(rt, args.pattern, args.refresh, progress=ProgressBar()))


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from .tools.fleet import fleet_run

    return _fanout(settings, lambda rt: fleet_run(rt, args.pattern, args.name, progress=ProgressBar()))


def _triage(args: argparse.Namespace, settings: Settings) -> int:
    from .render_people import render_triage
    from .tools.triage import crash_triage

    if args.log:
        return _triage_logs(args.log, args.json)
    if args.pattern is None:
        raise UsageError("give a host pattern, or kernel log files with --log", "crashfleet triage web, or --log FILE")
    result = _on_fleet(settings, lambda rt: crash_triage(rt, args.pattern, ProgressBar()))
    print(render_triage(result))
    return 0 if not result.errors else 1


def _triage_logs(paths: list[Path], as_json: bool) -> int:
    """Kernel logs people already have, grouped by crash title: the same rules as for hosts."""
    import json

    from crashfleet.agent.dumps import oops

    from .render_people import render_log_triage
    from .tools.triage_groups import group_files

    reports, unreadable = {}, []
    for path in paths:
        try:
            reports[str(path)] = oops.scan(path)
        except (OSError, ValueError) as exc:
            unreadable.append({"file": str(path), "why": getattr(exc, "strerror", None) or str(exc)})
    groups = group_files(reports)
    if as_json:
        print(json.dumps({"groups": groups, "unreadable": unreadable}, indent=2))
    else:
        print(render_log_triage(groups, unreadable))
    return 0 if not unreadable else 1


def _trace(args: argparse.Namespace, settings: Settings) -> int:
    from .render_people import render_trace
    from .tools.bpftrace import bpftrace_result, bpftrace_run

    async def trace(rt: Runtime) -> Any:
        result = await bpftrace_run(rt, args.pattern, tool=args.tool, duration=args.duration, progress=ProgressBar())
        if result.job_id:  # hosts still tracing: wait for them (a person at a terminal can)
            result = await bpftrace_result(rt, result.job_id, wait=args.duration + 30, progress=ProgressBar())
        return result

    result = _on_fleet(settings, trace)
    print(render_trace(result))
    return 0 if result.summary.ok == result.summary.total else 1


def _capture(args: argparse.Namespace, settings: Settings) -> int:
    from .render_people import capture_progress, render_capture
    from .tools.capture import capture_start, capture_status, capture_summary

    async def capture(rt: Runtime) -> Any:
        started = await capture_start(
            rt,
            args.pattern,
            args.mode,
            args.target,
            args.duration,
            interface=args.interface,
            filter=args.filter,
            progress=ProgressBar(),
        )
        if started.job_id is None:  # no host could start: their errors, as a fan-out shows them
            return started
        bar = ProgressBar()
        while (status := await capture_status(rt, started.job_id)).summary.running:
            await bar(*capture_progress(status, args.duration))
            await asyncio.sleep(0.5)  # polling the hosts' capture state, not a fixed wait
        await bar(1, 1, "")
        return await capture_summary(rt, started.job_id, progress=ProgressBar())

    result = _on_fleet(settings, capture)
    if isinstance(result, FanoutResult):
        print(render_fanout(result))
        return 1
    print(render_capture(result))
    return 0 if not result.errors else 1


def _call(args: argparse.Namespace, settings: Settings) -> int:
    """Any tool from a terminal (what a consent refusal names): a person typed it, nobody is asked."""
    import inspect
    import json

    from . import registry

    try:
        spec = registry.find(args.tool)
    except KeyError:
        raise UsageError(f"no tool {args.tool!r}", "crashfleet serve lists them in tools/list") from None
    try:
        arguments = json.loads(args.arguments)
    except ValueError as exc:
        raise UsageError(f"arguments are not JSON: {exc}", 'give a JSON object, e.g. \'{"pattern": "web"}\'') from None
    if not isinstance(arguments, dict):
        raise UsageError("arguments must be a JSON object")
    try:
        inspect.signature(spec.fn).bind(None, **arguments)
    except TypeError as exc:
        raise UsageError(f"{args.tool}: {exc}") from None

    async def go(rt: Runtime) -> Any:
        answer = spec.fn(rt, **arguments)
        return await answer if inspect.isawaitable(answer) else answer

    result = _on_fleet(settings, go)
    print(result.model_dump_json(indent=2, exclude_none=True))
    return 0


def _on_fleet(settings: Settings, tool: Callable[[Runtime], Awaitable[Any]]) -> Any:
    async def go() -> Any:
        rt = Runtime.create(settings)
        try:
            return await tool(rt)
        finally:
            await rt.close()

    return asyncio.run(go())


def _fanout(settings: Settings, tool: Callable[[Runtime], Awaitable[Any]]) -> int:
    result = _on_fleet(settings, tool)
    print(render_fanout(result))
    return 0 if result.summary.ok == result.summary.total else 1


def _agent_build(args: argparse.Namespace, settings: Settings) -> int:
    bundle = write_bundle(args.output)
    print(f"wrote {args.output} (build {bundle.build}, {len(bundle.data)} bytes)")
    return 0


def _bundle(args: argparse.Namespace, settings: Settings) -> int:
    from . import mcpb
    from .server import build_server

    listed = asyncio.run(build_server(Runtime.create(settings)).list_tools())
    size = mcpb.write(args.output, [{"name": t.name, "description": t.description or ""} for t in listed])
    print(f"wrote {args.output} ({size} bytes): open it with Claude Desktop to install crashfleet")
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from .report.build import report_build

    async def go() -> Any:
        rt = Runtime.create(settings)
        try:
            return await report_build(rt, args.title, args.ids, args.output)
        finally:
            await rt.close()

    result = asyncio.run(go())
    print(f"wrote {result.path}\n{result.summary}")
    for missing in result.missing:
        print(f"  not included: {missing.id}: {missing.why}", file=sys.stderr)
    return 0


def _bootstrap(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from .bootstrap import bootstrap

    hosts = Runtime.create(settings).fleet.match(args.host)
    if len(hosts) != 1:
        raise UsageError(f"bootstrap works on one host; {args.host!r} matches {len(hosts)}", "name a single host")
    bootstrap(hosts[0], settings, getpass.getpass)
    return 0
