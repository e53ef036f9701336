"""capture_*: tcpdump on many hosts at once, summarised on each host, correlated here."""

from __future__ import annotations

import collections
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult
from pydantic import Field

from crashfleet.agent import protocol
from crashfleet.inventory import Host

from ..errors import BadParams, JobGone, UsageError
from ..fleet import Progress
from ..grouping import HostOutcome, fold, group_outcomes
from ..jobs import FleetJob
from ..models import FanoutResult, HostFailure, Page
from ..runtime import Runtime
from ..wiring import REMOTE_READ, STARTS_WORK, STOPS_WORK, Pattern, answer, progress
from .capture_models import CaptureSummary
from .common import output_ref

SEVERITY = {"high": 3, "medium": 2, "low": 1}
SUMMARY_TOKENS = 1500  # per host, for one host; shared out when there are several
MIN_HOST_TOKENS = 250
MAX_PROBLEMS = 12
LOSS_EVIDENCE_FLOWS = 3  # flows whose packets are matched one by one across hosts
LOSS_PACKETS_SHOWN = 8


async def capture_interfaces(rt: Runtime, pattern: str, progress: Progress | None = None) -> FanoutResult:
    """Interfaces, addresses, state and the default route of every matching host."""

    async def ask(host: Host) -> HostOutcome:
        found = await rt.fleet.call(host, protocol.CAPTURE_INTERFACES)
        return HostOutcome(host.name, "ok", key=repr(found), data=found)

    outcomes, elapsed = await rt.fleet.fan_out(rt.fleet.match(pattern), ask, progress=progress)
    return group_outcomes(outcomes, elapsed, rt.settings.page_chars)


async def capture_start(
    rt: Runtime,
    pattern: str,
    mode: str = "auto",
    target: str | None = None,
    duration: float = 30,
    interface: str | None = None,
    filter: str | None = None,
    snaplen: int | None = None,
    max_packets: int | None = None,
    ring_bytes: int | None = None,
    progress: Progress | None = None,
) -> FanoutResult:
    """Start one capture per matching host over the same window; returns a job to summarise."""
    if not 0 < duration <= 3600:
        raise UsageError(f"duration must be between 0 and 3600 s, got {duration}")
    params = {
        k: v
        for k, v in {
            "mode": mode,
            "target": target,
            "duration": duration,
            "interface": interface,
            "filter": filter,
            "snaplen": snaplen,
            "max_packets": max_packets,
            "ring_bytes": ring_bytes,
        }.items()
        if v is not None
    }
    hosts = rt.fleet.match(pattern)
    if not hosts:
        raise UsageError(f"no host matches {pattern!r}", "fleet_hosts lists the hosts")

    async def start(host: Host) -> HostOutcome:
        status = await rt.fleet.call(host, protocol.CAPTURE_START, params)
        return _status_outcome(host.name, status)

    outcomes, elapsed = await rt.fleet.fan_out(hosts, start, progress=progress)
    result = group_outcomes(outcomes, elapsed, rt.settings.page_chars)
    started = {o.host: o.extra["job_id"] for o in outcomes if "job_id" in o.extra}
    if started:
        job = rt.jobs.add("capture", pattern, started, mode=mode, target=target, duration=duration)
        result.job_id = job.job_id
        result.note = (
            f"capturing on {len(started)} host(s) for {duration:g} s: capture_summary('{job.job_id}') "
            "when done (capture_status to check, capture_stop to end early)"
        )
    return result


async def capture_status(rt: Runtime, job_id: str, progress: Progress | None = None) -> FanoutResult:
    return await _each(rt, _job(rt, job_id), protocol.CAPTURE_STATUS, progress)


async def capture_stop(rt: Runtime, job_id: str, progress: Progress | None = None) -> FanoutResult:
    """Stop every host's tcpdump; the rings stay for capture_summary and capture_packets."""
    job = _job(rt, job_id)
    result = await _each(rt, job, protocol.JOB_CANCEL, progress, then=protocol.CAPTURE_STATUS)
    rt.jobs.set_state(job, "done")
    return result


async def capture_summary(
    rt: Runtime, job_id: str, max_tokens: int | None = None, progress: Progress | None = None
) -> CaptureSummary:
    """Each host summarises its own pcap; several hosts are correlated (packets lost between them)."""
    job = _job(rt, job_id)
    hosts = [rt.fleet.host(name) for name in job.host_jobs]
    per_host = max_tokens or max(MIN_HOST_TOKENS, min(SUMMARY_TOKENS, 2 * SUMMARY_TOKENS // len(hosts)))
    summaries: dict[str, dict[str, Any]] = {}

    async def summarise(host: Host) -> HostOutcome:
        found: protocol.CaptureReport = await _capture_call(
            rt, host, protocol.CAPTURE_SUMMARY, {"job_id": job.host_jobs[host.name], "max_tokens": per_host}
        )
        summaries[host.name] = dict(found)
        return HostOutcome(host.name, "ok")

    outcomes, _ = await rt.fleet.fan_out(
        hosts, summarise, progress=progress, deadline=max(rt.settings.host_deadline, 120)
    )
    errors = [
        HostFailure(host=o.host, status=o.status, message=o.message or "failed", hint=o.hint)
        for o in outcomes
        if o.status != "ok"
    ]
    lost = await correlate(rt, job, [h for h in hosts if h.name in summaries]) if len(summaries) > 1 else []
    problems = _rank(summaries, lost)
    note = None
    if any(s.get("state") == "running" for s in summaries.values()):
        note = "some captures are still running: this summary covers what was captured so far"
    return CaptureSummary(
        job_id=job.job_id, hosts=summaries, problems=problems, lost_between_hosts=lost, errors=errors, note=note
    )


async def capture_packets(
    rt: Runtime, job_id: str, host: str, filter: str | None = None, cursor: str | None = None
) -> Page:
    """Header-only packet lines of one host's capture, page by page."""
    job = _job(rt, job_id)
    if host not in job.host_jobs:
        raise UsageError(f"{host} is not part of capture {job_id}", f"its hosts: {', '.join(job.host_jobs)}")
    page: protocol.Page = await _capture_call(
        rt,
        rt.fleet.host(host),
        protocol.CAPTURE_PACKETS,
        {"job_id": job.host_jobs[host], "filter": filter, "cursor": cursor, "max_bytes": rt.settings.page_chars},
    )
    return Page(
        output_id=output_ref(host, page["output_id"]),
        host=host,
        text=page["text"],
        start_line=page["start_line"],
        end_line=page["end_line"],
        total_lines=page["total_lines"],
        next_cursor=page.get("next_cursor"),
        finished=page["finished"],
        truncated=page.get("truncated", False),
    )


# -- correlation -------------------------------------------------------------

Direction = tuple[str, str, str]  # proto, source endpoint, destination endpoint
Seen = tuple[int, float, float]  # packets in that direction, the conversation's first and last packet time


async def correlate(rt: Runtime, job: FleetJob, hosts: list[Host]) -> list[dict[str, Any]]:
    """Packets one host sent to another that the other never saw: lost between them.

    Only traffic inside the receiver's capture window counts: a flow sent before the receiver's tcpdump
    opened its device (or after it stopped) was not captured there, which is not loss."""
    views: dict[str, tuple[set[str], dict[Direction, Seen], tuple[float, float] | None]] = {}
    for host in hosts:
        found: protocol.CaptureFlows = await _capture_call(
            rt, host, protocol.CAPTURE_FLOWS, {"job_id": job.host_jobs[host.name]}
        )
        span = found.get("window")
        views[host.name] = (
            set(found["addresses"]),
            _directions(found["flows"]),
            (float(span[0]), float(span[1])) if span else None,
        )
    losses: list[dict[str, Any]] = []
    for sender, (addresses, sent, _) in views.items():
        for key, (count, first, last) in sent.items():
            if _ip(key[1]) not in addresses:
                continue
            for receiver, (their_addresses, seen, window) in views.items():
                if receiver == sender or _ip(key[2]) not in their_addresses:
                    continue
                if window is not None and not window[0] <= first <= last <= window[1]:
                    continue  # outside what the receiver captured: unknown, not lost
                arrived = seen.get(key, (0, 0.0, 0.0))[0]
                if arrived < count:
                    losses.append(
                        {
                            "from": sender,
                            "to": receiver,
                            "flow": f"{key[0]} {key[1]}>{key[2]}",
                            "sent": count,
                            "arrived": arrived,
                        }
                    )
    losses.sort(key=lambda loss: loss["arrived"] - loss["sent"])
    for loss in losses[:LOSS_EVIDENCE_FLOWS]:
        await _match_packets(rt, job, loss)
    return [loss for loss in losses if loss.get("lost", 1)]


async def _match_packets(rt: Runtime, job: FleetJob, loss: dict[str, Any]) -> None:
    """Which packets exactly: match identities (IP id, seq, ack, flags, length) on both ends."""
    params = {"flow": loss["flow"]}
    sent = await _fingerprints(rt, rt.fleet.host(loss["from"]), {**params, "job_id": job.host_jobs[loss["from"]]})
    seen = await _fingerprints(rt, rt.fleet.host(loss["to"]), {**params, "job_id": job.host_jobs[loss["to"]]})
    arrived = collections.Counter(identity for _, identity in seen)
    missing = []
    for number, identity in sent:
        if arrived[identity]:
            arrived[identity] -= 1
        else:
            missing.append(number)
    if seen:  # outside the receiver's window (first..last it saw) a packet may just be uncaptured
        first = next((n for n, i in sent if i == seen[0][1]), None)
        last = next((n for n, i in reversed(sent) if i == seen[-1][1]), None)
        if first is not None and last is not None:
            missing = [n for n in missing if first < n < last]
    loss["lost"] = len(missing)
    loss["packets"] = missing[:LOSS_PACKETS_SHOWN]


def _directions(flows: list[protocol.CaptureFlow]) -> dict[Direction, Seen]:
    """(packets, first, last) per direction (the conversation's first and last packet time)."""
    out: dict[Direction, Seen] = {}
    for flow in flows:
        proto, _, ends = flow["flow"].partition(" ")
        client, _, server = ends.partition(">")
        first, last = float(flow.get("first", 0.0)), float(flow.get("last", 0.0))
        out[(proto, client, server)] = (flow["sent"], first, last)
        out[(proto, server, client)] = (flow["returned"], first, last)
    return out


def _ip(endpoint: str) -> str:
    if endpoint.startswith("["):
        return endpoint[1 : endpoint.index("]")]
    return endpoint.rsplit(":", 1)[0] if endpoint.count(":") == 1 else endpoint


def _rank(summaries: dict[str, dict[str, Any]], lost: list[dict[str, Any]]) -> list[dict[str, Any]]:
    problems = []
    for loss in lost:
        count = loss.get("lost", loss["sent"] - loss["arrived"])
        text = (
            f"{count} of {loss['sent']} packets {loss['from']} sent to {loss['to']} on {loss['flow']} never "
            f"arrived at {loss['to']}: lost between {loss['from']} and {loss['to']}"
        )
        if loss["arrived"] == 0:
            text = (
                f"{loss['flow']} left {loss['from']} ({loss['sent']} packets) and never arrived at "
                f"{loss['to']}: lost between {loss['from']} and {loss['to']}"
            )
        problems.append(
            {
                "severity": "high",
                "kind": "lost_between_hosts",
                "hosts": f"{loss['from']}>{loss['to']}",
                "text": text,
                "packets": loss.get("packets", []),
            }
        )
    same: dict[str, dict[str, Any]] = {}  # one problem seen the same way on several hosts is listed once
    for host, summary in summaries.items():
        for problem in summary.get("problems", []):
            if problem["text"] in same:
                same[problem["text"]]["hosts"].append(host)
            else:
                same[problem["text"]] = {"hosts": [host], **problem}
    for problem in same.values():
        seen_on = problem.pop("hosts")
        problem["host" if len(seen_on) == 1 else "hosts"] = fold(seen_on)
        problems.append(problem)
    problems.sort(key=lambda p: -SEVERITY.get(p.get("severity", "low"), 1))
    return problems[:MAX_PROBLEMS]


# -- plumbing ---------------------------------------------------------------


def _job(rt: Runtime, job_id: str) -> FleetJob:
    job = rt.jobs.get(job_id)
    if job.tool != "capture":
        raise UsageError(f"{job_id} is a {job.tool} job, not a capture", "job_status shows any job")
    return job


async def _capture_call(rt: Runtime, host: Host, method: str, params: dict[str, Any]) -> Any:
    try:
        return await rt.fleet.call(host, method, params)
    except JobGone as exc:
        raise UsageError(
            f"the capture is gone from {host.name}: the agent that ran it ended (killed, or its "
            f"job lease ran out with no controller attached): {exc.message}",
            "start a new capture",
        ) from exc
    except BadParams as exc:
        raise UsageError(exc.message, exc.hint) from exc


async def _fingerprints(rt: Runtime, host: Host, params: dict[str, Any]) -> list[tuple[int, str]]:
    """(packet number, identity) of the flow's packets on that host."""
    found: protocol.CaptureFingerprints = await _capture_call(rt, host, protocol.CAPTURE_FINGERPRINTS, params)
    return found["packets"]


async def _each(
    rt: Runtime, job: FleetJob, method: str, progress: Progress | None, then: str | None = None
) -> FanoutResult:
    async def ask(host: Host) -> HostOutcome:
        params = {"job_id": job.host_jobs[host.name]}
        status = await _capture_call(rt, host, method, params)
        if then:
            status = await _capture_call(rt, host, then, params)
        return _status_outcome(host.name, status)

    outcomes, elapsed = await rt.fleet.fan_out([rt.fleet.host(n) for n in job.host_jobs], ask, progress=progress)
    if job.state == "running" and all(o.status != "running" for o in outcomes):
        rt.jobs.set_state(job, "done")
    result = group_outcomes(outcomes, elapsed, rt.settings.page_chars)
    result.job_id = job.job_id
    return result


def _status_outcome(host: str, status: protocol.CaptureStatus) -> HostOutcome:
    brief = {
        k: status.get(k)
        for k in ("state", "elapsed", "files", "disk_bytes", "captured", "dropped_by_kernel", "stop_reason", "error")
        if status.get(k) is not None
    }
    brief["interface"] = status.get("meta", {}).get("interface")
    brief["filter"] = status.get("meta", {}).get("filter")
    state = status.get("state")
    outcome = "running" if state == "running" else "failed" if state in ("failed", "aborted") else "ok"
    return HostOutcome(
        host,
        outcome,  # type: ignore[arg-type]
        key=repr(sorted(brief.items())),
        data=brief,
        message=status.get("error") or status.get("stop_reason"),
        stderr_tail=status.get("stderr_tail"),
        extra={"job_id": status.get("job_id")},
    )


def register(mcp: MCPServer, rt: Runtime) -> None:
    @mcp.tool(description="Network interfaces of hosts: addresses, state, default route.", annotations=REMOTE_READ)
    async def capture_interfaces(ctx: Context, pattern: Pattern) -> Annotated[CallToolResult, FanoutResult]:
        return await answer(lambda: _interfaces(rt, pattern, progress(ctx)))

    @mcp.tool(
        description="Start tcpdump on hosts for `duration` s; mode: auto, host, port, web, dns, diagnosis.",
        annotations=STARTS_WORK,
    )
    async def capture_start(
        ctx: Context,
        pattern: Pattern,
        mode: str = "auto",
        target: Annotated[str | None, Field(description="IP, host name or port")] = None,
        duration: float = 30,
        interface: str | None = None,
        filter: Annotated[str | None, Field(description="BPF filter (overrides mode)")] = None,
        snaplen: int | None = None,
        max_packets: int | None = None,
    ) -> Annotated[CallToolResult, FanoutResult]:
        return await answer(
            lambda: _start(
                rt, pattern, mode, target, duration, interface, filter, snaplen, max_packets, progress=progress(ctx)
            )
        )

    @mcp.tool(description="State of a capture on each host.", annotations=REMOTE_READ)
    async def capture_status(ctx: Context, job_id: str) -> Annotated[CallToolResult, FanoutResult]:
        return await answer(lambda: _status(rt, job_id, progress(ctx)))

    @mcp.tool(description="Stop a capture early; what was captured is kept.", annotations=STOPS_WORK)
    async def capture_stop(ctx: Context, job_id: str) -> Annotated[CallToolResult, FanoutResult]:
        return await answer(lambda: _stop(rt, job_id, progress(ctx)))

    @mcp.tool(
        description="Diagnostic summary of a capture per host, with ranked problems and cross-host loss.",
        annotations=REMOTE_READ,
    )
    async def capture_summary(ctx: Context, job_id: str) -> Annotated[CallToolResult, CaptureSummary]:
        return await answer(lambda: _summary(rt, job_id, None, progress(ctx)))

    @mcp.tool(
        description="Header-only packet lines of one host's capture, paged; filter e.g. 'c3', 'port 53'.",
        annotations=REMOTE_READ,
    )
    async def capture_packets(
        job_id: str, host: str, filter: str | None = None, cursor: str | None = None
    ) -> Annotated[CallToolResult, Page]:
        return await answer(lambda: _packets(rt, job_id, host, filter, cursor))


_interfaces, _start, _status, _stop, _summary, _packets = (
    capture_interfaces,
    capture_start,
    capture_status,
    capture_stop,
    capture_summary,
    capture_packets,
)
