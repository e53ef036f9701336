"""What timed runs share (bpftrace_run, profile_run): starting them on every host, polling their jobs.

A run lasts `duration` seconds on each host. Short runs are awaited and answered whole; longer
ones become a job after a moment, long enough to catch compile errors (they come back within a
second). The agent may refuse the request itself (a bad program or number, its policy): when
every host does, the call was wrong and is answered as a tool error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from crashfleet.agent import protocol
from crashfleet.inventory import Host

from .. import budget
from ..errors import BadParams, PolicyDenied, ProgramRefused, UsageError
from ..grouping import HostOutcome, fold
from ..jobs import FleetJob
from ..progress import Progress
from ..runtime import Runtime
from .common import host_deadline

RESULT_SLACK = 3.0  # seconds past the duration for bpftrace to print its maps and exit
REFUSALS = (ProgramRefused, BadParams, PolicyDenied)
Outcome = Callable[[str, Any], HostOutcome]  # host, the agent's status -> that host's outcome
Wait = Annotated[float, Field(description="seconds to wait for hosts")]


def check_duration(duration: float, cap: str) -> None:
    if not 0 < duration <= 3600:
        raise UsageError(f"duration must be between 0 and 3600 s, got {duration}", f"hosts cap it lower ({cap})")


async def run_timed(
    rt: Runtime,
    pattern: str,
    method: str,
    params: dict[str, Any],
    duration: float,
    timeout: float | None,
    outcome: Outcome,
    progress: Progress | None,
) -> tuple[list[HostOutcome], int]:
    """Start the run on every matching host; each host's outcome, running or done."""
    wait = duration + RESULT_SLACK if duration + RESULT_SLACK <= _patience(rt) else 2.0
    deadline = max(host_deadline(rt, timeout), wait + 15.0)

    async def run(host: Host) -> HostOutcome:
        started = time.monotonic()
        await rt.fleet.link(host)  # connecting counts against the deadline: wait only for what is left
        left = max(0.0, min(wait, deadline - (time.monotonic() - started) - 5.0))
        try:
            status = await rt.fleet.call(host, method, {**params, "wait": left})
        except REFUSALS as exc:
            return refused(host.name, exc)
        return outcome(host.name, status)

    hosts = rt.fleet.match(pattern)
    outcomes, elapsed = await rt.fleet.fan_out(hosts, run, deadline=deadline, progress=progress, ticking=wait)
    raise_if_all_refused(outcomes)
    return outcomes, elapsed


async def poll_timed(
    rt: Runtime,
    job: FleetJob,
    method: str,
    params: dict[str, Any],
    wait: float,
    outcome: Outcome,
    progress: Progress | None,
) -> tuple[list[HostOutcome], int]:
    """A timed run's job, asked on every host (each waits up to `wait` s for it to end)."""
    if not 0 <= wait <= 120:
        raise UsageError(f"wait must be between 0 and 120 s, got {wait}")

    async def ask(host: Host, agent_job: str) -> HostOutcome:
        status = await rt.fleet.call(host, method, {**params, "job_id": agent_job, "wait": wait})
        return outcome(host.name, status)

    return await rt.jobs.each_host(job, ask, deadline=wait + 30.0, progress=progress, ticking=wait)


def _patience(rt: Runtime) -> float:
    """How long a run may be awaited whole: command_wait, less when the call must answer sooner."""
    left = budget.left()
    return rt.settings.command_wait if left is None else min(rt.settings.command_wait, left - 1.0)


def failed_run(outcome: HostOutcome, error: protocol.BpftraceError | None) -> bool:
    """A run that failed on its host (the agent's error in its status) marks the outcome failed."""
    if error is None:
        return False
    outcome.status, outcome.message, outcome.hint = "failed", error["message"], error.get("hint")
    outcome.key = f"{error['kind']}:{error['message']}"
    return True


def refused(host: str, exc: ProgramRefused | BadParams | PolicyDenied) -> HostOutcome:
    """A failed host that remembers why the agent refused."""
    return HostOutcome(
        host, "failed", key=f"{exc.kind}:{exc.message}", message=exc.message, hint=exc.hint, extra={"refused": exc}
    )


def raise_if_all_refused(outcomes: list[HostOutcome]) -> None:
    """Every host refused the request: that is a tool error, with the first reason and where."""
    failed = [o for o in outcomes if o.status == "failed" and isinstance(o.extra.get("refused"), REFUSALS)]
    if outcomes and len(failed) == len(outcomes):
        first = failed[0]
        where = fold(o.host for o in failed if o.key == first.key)
        raise UsageError(f"{first.message} (on {where})", first.hint)
