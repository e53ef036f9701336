"""What timed tracing runs share (bpftrace_run, profile_run): waiting, refusals, failed runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from crashfleet.agent import protocol
from crashfleet.inventory import Host

from ..errors import BadParams, PolicyDenied, ProgramRefused, UsageError
from ..fleet import Fleet
from ..grouping import HostOutcome, fold
from ..jobs import FleetJob
from ..progress import Progress
from ..runtime import Runtime
from .common import host_deadline

RESULT_SLACK = 3.0  # seconds past the duration for bpftrace to print its maps and exit
# The agent refused the request itself (bad program or numbers, its policy): when every host
# does, the call was wrong.
REFUSALS = (ProgramRefused, BadParams, PolicyDenied)


def timed_wait(rt: Runtime, duration: float, timeout: float | None) -> tuple[float, float]:
    """(wait, per-host deadline). Short runs are awaited and answered whole; longer ones become a
    job after a moment (long enough to catch compile errors, which come back within a second)."""
    wait = duration + RESULT_SLACK if duration + RESULT_SLACK <= rt.settings.command_wait else 2.0
    return wait, max(host_deadline(rt, timeout), wait + 15.0)


async def timed_call(
    fleet: Fleet, host: Host, method: str, params: dict[str, Any], wait: float, deadline: float
) -> Any:
    """Start the run; connecting counts against the deadline, so wait only for what is left."""
    started = time.monotonic()
    await fleet.link(host)
    left = max(0.0, min(wait, deadline - (time.monotonic() - started) - 5.0))
    return await fleet.call(host, method, {**params, "wait": left})


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


def failed_run(outcome: HostOutcome, error: protocol.BpftraceError | None) -> bool:
    """A run that failed on its host (the agent's error in its status) marks the outcome failed."""
    if error is None:
        return False
    outcome.status, outcome.message, outcome.hint = "failed", error["message"], error.get("hint")
    outcome.key = f"{error['kind']}:{error['message']}"
    return True


Outcome = Callable[[str, Any], HostOutcome]  # host, the agent's status -> that host's outcome
Wait = Annotated[float, Field(description="seconds to wait for hosts")]


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
