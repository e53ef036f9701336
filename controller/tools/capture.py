"""capture_*: tcpdump on many hosts at once, summarised on each host, correlated here."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from crashfleet.agent import protocol
from crashfleet.inventory import Host

from ..errors import BadParams, JobGone, UsageError
from ..grouping import HostOutcome, group_outcomes
from ..jobs import FleetJob
from ..models import FanoutResult, HostFailure, Page
from ..progress import Progress
from ..registry import tool
from ..runtime import Runtime
from ..wiring import REMOTE_READ, STARTS_WORK, STOPS_WORK, Pattern
from .capture_correlate import Loss, losses, missing_packets, rank
from .capture_models import CaptureSummary
from .common import page_answer

SUMMARY_TOKENS = 1500  # per host, for one host; shared out when there are several
MIN_HOST_TOKENS = 250
LOSS_EVIDENCE_FLOWS = 3  # flows whose packets are matched one by one across hosts


@tool("Network interfaces", "Network interfaces of hosts: addresses, state, default route.", REMOTE_READ)
async def capture_interfaces(rt: Runtime, pattern: Pattern, progress: Progress | None = None) -> FanoutResult:
    """Interfaces, addresses, state and the default route of every matching host."""

    async def ask(host: Host) -> HostOutcome:
        found = await rt.fleet.call(host, protocol.CAPTURE_INTERFACES)
        return HostOutcome(host.name, "ok", key=repr(found), data=found)

    outcomes, elapsed = await rt.fleet.fan_out(rt.fleet.match(pattern), ask, progress=progress)
    return group_outcomes(outcomes, elapsed, rt.settings.page_chars)


@tool(
    "Start a capture",
    "Start tcpdump on hosts for `duration` s; mode: auto, host, port, web, dns, diagnosis.",
    STARTS_WORK,
    hide=("ring_bytes",),
)
async def capture_start(
    rt: Runtime,
    pattern: Pattern,
    mode: str = "auto",
    target: Annotated[str | None, Field(description="IP, host name or port")] = None,
    duration: float = 30,
    interface: str | None = None,
    filter: Annotated[str | None, Field(description="BPF filter (overrides mode)")] = None,
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
    job = rt.jobs.start("capture", pattern, outcomes, every_started=True, mode=mode, target=target, duration=duration)
    if job is not None:
        result.job_id = job.job_id
        result.note = (
            f"capturing on {len(job.host_jobs)} host(s) for {duration:g} s: capture_summary('{job.job_id}') "
            "when done (capture_status to check, capture_stop to end early)"
        )
    return result


@tool("Capture status", "State of a capture on each host.", REMOTE_READ)
async def capture_status(rt: Runtime, job_id: str, progress: Progress | None = None) -> FanoutResult:
    return await _each(rt, rt.jobs.get(job_id, "capture"), protocol.CAPTURE_STATUS, progress)


@tool("Stop a capture", "Stop a capture early; what was captured is kept.", STOPS_WORK)
async def capture_stop(rt: Runtime, job_id: str, progress: Progress | None = None) -> FanoutResult:
    """Stop every host's tcpdump; the rings stay for capture_summary and capture_packets."""
    job = rt.jobs.get(job_id, "capture")
    result = await _each(rt, job, protocol.JOB_CANCEL, progress, then=protocol.CAPTURE_STATUS)
    rt.jobs.finish(job)
    return result


@tool(
    "Capture summary",
    "Diagnostic summary of a capture per host, with ranked problems and cross-host loss.",
    REMOTE_READ,
    hide=("max_tokens",),
)
async def capture_summary(
    rt: Runtime, job_id: str, max_tokens: int | None = None, progress: Progress | None = None
) -> CaptureSummary:
    """Each host summarises its own pcap; several hosts are correlated (packets lost between them)."""
    job = rt.jobs.get(job_id, "capture")
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
    lost = await _correlate(rt, job, [h for h in hosts if h.name in summaries]) if len(summaries) > 1 else []
    problems = rank(summaries, lost)
    note = None
    if any(s.get("state") == "running" for s in summaries.values()):
        note = "some captures are still running: this summary covers what was captured so far"
    return CaptureSummary(
        job_id=job.job_id, hosts=summaries, problems=problems, lost_between_hosts=lost, errors=errors, note=note
    )


@tool(
    "Captured packets",
    "Header-only packet lines of one host's capture, paged; filter e.g. 'c3', 'port 53'.",
    REMOTE_READ,
)
async def capture_packets(
    rt: Runtime, job_id: str, host: str, filter: str | None = None, cursor: str | None = None
) -> Page:
    """Header-only packet lines of one host's capture, page by page."""
    job = rt.jobs.get(job_id, "capture")
    if host not in job.host_jobs:
        raise UsageError(f"{host} is not part of capture {job_id}", f"its hosts: {', '.join(job.host_jobs)}")
    page: protocol.Page = await _capture_call(
        rt,
        rt.fleet.host(host),
        protocol.CAPTURE_PACKETS,
        {"job_id": job.host_jobs[host], "filter": filter, "cursor": cursor, "max_bytes": rt.settings.page_chars},
    )
    return page_answer(host, page)


# -- correlation: the agent calls here, the analysis in capture_correlate ----


async def _correlate(rt: Runtime, job: FleetJob, hosts: list[Host]) -> list[Loss]:
    """Packets one host sent to another that the other never saw: lost between them."""
    views: dict[str, dict[str, Any]] = {}
    for host in hosts:
        views[host.name] = await _capture_call(rt, host, protocol.CAPTURE_FLOWS, {"job_id": job.host_jobs[host.name]})
    found = losses(views)
    for loss in found[:LOSS_EVIDENCE_FLOWS]:
        sent = await _fingerprints(rt, job, loss["from"], loss["flow"])
        seen = await _fingerprints(rt, job, loss["to"], loss["flow"])
        loss["lost"], loss["packets"] = missing_packets(sent, seen)
    return [loss for loss in found if loss.get("lost", 1)]


async def _fingerprints(rt: Runtime, job: FleetJob, host: str, flow: str) -> list[tuple[int, str]]:
    """(packet number, identity) of the flow's packets in this host's capture."""
    params = {"flow": flow, "job_id": job.host_jobs[host]}
    found: protocol.CaptureFingerprints = await _capture_call(
        rt, rt.fleet.host(host), protocol.CAPTURE_FINGERPRINTS, params
    )
    return found["packets"]


# -- plumbing ---------------------------------------------------------------


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


async def _each(
    rt: Runtime, job: FleetJob, method: str, progress: Progress | None, then: str | None = None
) -> FanoutResult:
    async def ask(host: Host, agent_job: str) -> HostOutcome:
        params = {"job_id": agent_job}
        status = await _capture_call(rt, host, method, params)
        if then:
            status = await _capture_call(rt, host, then, params)
        return _status_outcome(host.name, status)

    outcomes, elapsed = await rt.jobs.each_host(job, ask, progress=progress)
    result = group_outcomes(outcomes, elapsed, rt.settings.page_chars)
    result.job_id = job.job_id
    return result


def _status_outcome(host: str, status: protocol.CaptureStatus) -> HostOutcome:
    brief = {
        k: status.get(k)
        for k in (
            "state",
            "listening",
            "elapsed",
            "files",
            "disk_bytes",
            "captured",
            "dropped_by_kernel",
            "stop_reason",
            "error",
        )
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
