"""bpftrace_info, bpftrace_probes, bpftrace_tools, bpftrace_run, bpftrace_result.

The agent enforces safety (refused builtins, pinned limits, duration and output caps);
here we fan out, group, and merge the maps every host printed into one answer.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated, TypeVar

from pydantic import Field

from crashfleet.agent import protocol
from crashfleet.inventory import Host

from ..errors import UsageError
from ..grouping import HostOutcome, fold, group_outcomes
from ..models import FanoutResult
from ..progress import Progress
from ..registry import tool
from ..runtime import Runtime
from ..wiring import REMOTE_READ, STARTS_WORK, Pattern, Timeout
from .bpftrace_merge import OUTLIER_RULE, merge_maps, outlier_histograms
from .bpftrace_models import BpftraceProbes, BpftraceRun, BpftraceTools, ProbeDrift, ToolEntry, ToolHosts
from .common import digest, host_deadline, outcome_from_job
from .tracing import REFUSALS, Wait, check_duration, failed_run, poll_timed, raise_if_all_refused, refused, run_timed

MAX_DRIFT_LISTED = 30
T = TypeVar("T")
Program = Annotated[str | None, Field(description="bpftrace program text")]
Tool = Annotated[str | None, Field(description="library tool name (see bpftrace_tools)")]
Args = Annotated[
    dict[str, str | int | float] | None, Field(description="tool arguments by name; for a program, '1'..'9' for $1..$9")
]
Duration = Annotated[float, Field(description="seconds to trace (hosts cap it, 60 s by default)")]


@tool("bpftrace facts", "bpftrace version, features, BTF, tracefs and probe types per host, grouped.", REMOTE_READ)
async def bpftrace_info(
    rt: Runtime, pattern: Pattern = "all", timeout: Timeout = None, progress: Progress | None = None
) -> FanoutResult:
    """Version, features, BTF, tracefs and probe types per host, grouped."""
    mounted: list[str] = []

    async def info(host: Host) -> HostOutcome:
        data: protocol.BpftraceInfo = await rt.fleet.call(host, protocol.BPFTRACE_INFO)
        if data["tracefs"].pop("mounted_now", False):
            mounted.append(host.name)
        data.pop("path", None)
        data["features"] = {k: v for k, v in data.get("features", {}).items() if k != "System"}
        return HostOutcome(host.name, "ok", key=digest(data), data=dict(data))

    outcomes, elapsed = await rt.fleet.fan_out(
        rt.fleet.match(pattern), info, deadline=host_deadline(rt, timeout), progress=progress
    )
    result = group_outcomes(outcomes, elapsed, rt.settings.page_chars)
    if mounted:
        result.note = f"the agent mounted tracefs on {fold(mounted)} (policy bpftrace_mount_tracefs)"
    return result


@tool(
    "List probes",
    "List the probes hosts offer (bpftrace -l), paged and grouped; names probes some hosts lack.",
    REMOTE_READ,
    hide=("timeout",),
)
async def bpftrace_probes(
    rt: Runtime,
    pattern: Pattern = "all",
    filter: Annotated[str | None, Field(description="probe glob, e.g. tracepoint:sched:*")] = None,
    timeout: float | None = None,
    progress: Progress | None = None,
) -> BpftraceProbes:
    """`bpftrace -l [filter]` per host, grouped and paged; names the probes some hosts lack."""
    deadline = host_deadline(rt, timeout)
    params = {"filter": filter, "page_bytes": rt.settings.page_chars}

    async def listing(host: Host) -> HostOutcome:
        try:
            found: protocol.BpftraceProbes = await rt.fleet.call(host, protocol.BPFTRACE_PROBES, params)
        except REFUSALS as exc:
            return refused(host.name, exc)
        page = found["page"]
        data = {"count": found["count"], "types": found["types"]}
        if found.get("tracefs_error"):
            data["tracefs"] = found["tracefs_error"]
        return HostOutcome(
            host.name,
            "ok",
            key=found["sha256"],
            output=page.get("text"),
            output_id=f"{host.name}:{found['output_id']}",
            next_cursor=page.get("next_cursor"),
            total_lines=found["count"],
            data=data,
        )

    outcomes, elapsed = await rt.fleet.fan_out(rt.fleet.match(pattern), listing, deadline=deadline, progress=progress)
    raise_if_all_refused(outcomes)
    fanout = group_outcomes(outcomes, elapsed, rt.settings.page_chars)
    result = BpftraceProbes(**fanout.model_dump())
    ok = [o for o in outcomes if o.status == "ok"]
    if len({o.key for o in ok}) > 1:
        result.drift = await _drift(rt, ok, filter)
        result.note = "hosts offer different probes: see drift (kernel versions or configs differ)"
    return result


async def _drift(rt: Runtime, ok: list[HostOutcome], filter: str | None) -> list[ProbeDrift]:
    """Fetch one full list per distinct probe set; say what each set lacks against the union."""
    groups: dict[str, list[str]] = {}
    for outcome in ok:
        groups.setdefault(outcome.key, []).append(outcome.host)

    async def full(host: str) -> set[str]:
        found: protocol.BpftraceProbes = await rt.fleet.call(
            rt.fleet.host(host), protocol.BPFTRACE_PROBES, {"filter": filter, "full": True, "page_bytes": 256}
        )
        return set(found["probes"])

    sets = await asyncio.gather(*(full(hosts[0]) for hosts in groups.values()))
    union = set().union(*sets)
    drift = []
    for hosts, probes in zip(groups.values(), sets):
        lacks = sorted(union - probes)
        drift.append(
            ProbeDrift(hosts=fold(hosts), count=len(probes), lacks_count=len(lacks), lacks=lacks[:MAX_DRIFT_LISTED])
        )
    return sorted(drift, key=lambda d: -d.lacks_count)


@tool(
    "bpftrace tool library",
    "The vetted bpftrace tool library, with the hosts each tool can run on.",
    REMOTE_READ,
    hide=("timeout",),
)
async def bpftrace_tools(
    rt: Runtime, pattern: Pattern = "all", timeout: float | None = None, progress: Progress | None = None
) -> BpftraceTools:
    """The vetted tool library and, per tool, the hosts that can run it (and why others cannot)."""

    async def tools(host: Host) -> HostOutcome:
        found: protocol.BpftraceTools = await rt.fleet.call(host, protocol.BPFTRACE_TOOLS)
        return HostOutcome(host.name, "ok", key="tools", data=dict(found))

    hosts = rt.fleet.match(pattern)
    deadline = max(host_deadline(rt, timeout), 60.0)  # the first check of a boot compiles every tool
    outcomes, elapsed = await rt.fleet.fan_out(hosts, tools, deadline=deadline, progress=progress)
    entries: dict[str, ToolEntry] = {}
    runs: dict[str, list[str]] = {}
    cannot: dict[str, dict[str, list[str]]] = {}
    listed: protocol.BpftraceTool
    for outcome in outcomes:
        for listed in (outcome.data or {}).get("tools", []) if outcome.status == "ok" else []:
            name = listed["name"]
            entries.setdefault(
                name,
                ToolEntry(
                    name=name,
                    source=listed["source"],
                    description=listed["description"],
                    args=[_arg_text(a) for a in listed["args"]],
                    runs_on="",
                ),
            )
            if listed["runnable"]:
                runs.setdefault(name, []).append(outcome.host)
            else:
                cannot.setdefault(name, {}).setdefault(listed["reason"], []).append(outcome.host)
    for name, entry in entries.items():
        entry.runs_on = fold(runs.get(name, []))
        entry.cannot_run = [ToolHosts(hosts=fold(h), reason=r) for r, h in cannot.get(name, {}).items()]
    failed = [o for o in outcomes if o.status != "ok"]
    errors = group_outcomes(failed, elapsed, rt.settings.page_chars) if failed else None
    ordered = sorted(entries.values(), key=lambda e: (e.source != "crashfleet", not e.runs_on, e.name))
    return BpftraceTools(
        hosts=fold(o.host for o in outcomes if o.status == "ok"),
        tools=ordered,
        errors=errors,
        note="run one with bpftrace_run(tool=NAME, args={...}); distro tools end in .bt",
    )


@tool(
    "Trace with bpftrace",
    "Trace hosts for a bounded time with a program or library tool; maps merged fleet-wide with outliers.",
    STARTS_WORK,
    hide=("timeout",),
)
async def bpftrace_run(
    rt: Runtime,
    pattern: Pattern = "all",
    program: Program = None,
    tool: Tool = None,
    args: Args = None,
    duration: Duration = 10.0,
    timeout: float | None = None,
    progress: Progress | None = None,
) -> BpftraceRun:
    """Run a program or a library tool for `duration` seconds on every host; maps merged fleet-wide."""
    if (program is None) == (tool is None):
        raise UsageError("give exactly one of program or tool", "bpftrace_tools lists the tools")
    check_duration(duration, "policy bpftrace_max_duration, 60 s by default")
    for key, value in (args or {}).items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise UsageError(f"args[{key!r}] must be a string or a number")
    params = {
        "program": program,
        "tool": tool,
        "args": args or {},
        "duration": duration,
        "page_bytes": rt.settings.page_chars,
    }
    outcomes, elapsed = await run_timed(
        rt, pattern, protocol.BPFTRACE_RUN, params, duration, timeout, _outcome, progress
    )
    result = _result(rt, outcomes, elapsed)
    job = rt.jobs.start(
        "bpftrace_run", pattern, outcomes, run=tool or "program", duration=duration, result_tool="bpftrace_result"
    )
    if job is not None:
        result.job_id = job.job_id
        result.note = (
            f"{len(job.host_jobs)} host(s) still tracing: bpftrace_result('{job.job_id}') merges the "
            f"maps when done; job_status and job_cancel work too"
        )
    return result


@tool("bpftrace result", "Merged result of a bpftrace_run job once its hosts are done.", REMOTE_READ)
async def bpftrace_result(
    rt: Runtime,
    job_id: str,
    wait: Wait = 0.0,
    progress: Progress | None = None,
) -> BpftraceRun:
    """A bpftrace_run job's result: merged maps once hosts are done (waits up to `wait` s)."""
    job = rt.jobs.get(job_id, "bpftrace_run")
    params = {"page_bytes": rt.settings.page_chars}
    outcomes, elapsed = await poll_timed(rt, job, protocol.BPFTRACE_RESULT, params, wait, _outcome, progress)
    result = _result(rt, outcomes, elapsed)
    result.job_id = job.job_id
    return result


def _outcome(host: str, status: protocol.BpftraceStatus) -> HostOutcome:
    """A run's status as this host's outcome: JSON runs group by what they printed, maps ride along."""
    outcome = outcome_from_job(host, status)
    failed = failed_run(outcome, status.get("error"))
    if not failed and status["state"] != "running" and status.get("meta", {}).get("format") == "json":
        printed = status.get("printed") or ""
        outcome.output = printed or None
        outcome.next_cursor = None
        outcome.key = hashlib.sha256(f"{status['state']}:{printed}".encode()).hexdigest()
        outcome.extra["maps"] = status.get("maps") or {}
    if (reason := status.get("stop_reason")) and outcome.status == "ok" and "output cap" in reason:
        outcome.message = reason
    return outcome


def _result(rt: Runtime, outcomes: list[HostOutcome], elapsed: int) -> BpftraceRun:
    fanout = group_outcomes(outcomes, elapsed, rt.settings.page_chars)
    result = BpftraceRun(**fanout.model_dump())
    per_host = {o.host: o.extra["maps"] for o in outcomes if o.status == "ok" and o.extra.get("maps")}
    if per_host:
        result.maps = merge_maps(per_host)
        result.outlier_rule = OUTLIER_RULE
        result.view = {"outlier_histograms": outlier_histograms(per_host, result.maps)}
    return result


def _arg_text(arg: protocol.ToolArg) -> str:
    return f"{arg['name']}={arg['default']}" + (f" ({arg['help']})" if arg.get("help") else "")
