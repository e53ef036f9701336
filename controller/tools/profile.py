"""profile_run, profile_result: CPU profiles of the fleet's kernels, folded stacks merged fleet-wide.

The agent builds the bpftrace program from the numbers given here and runs it through its
bpftrace checks and caps (agent/profile.py); here we fan out, poll and merge.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from crashfleet.agent import protocol

from ..grouping import HostOutcome, group_outcomes
from ..progress import Progress
from ..registry import tool
from ..runtime import Runtime
from ..wiring import REMOTE_READ, STARTS_WORK, Pattern
from .common import outcome_from_job, output_ref
from .profile_merge import OUTLIER_RULE, flame_stacks, merge_profiles, stack_counts
from .profile_models import ProfileRun
from .tracing import Wait, check_duration, failed_run, poll_timed, run_timed

HOST_TOP = 200  # stacks each host sends (all of them stay in its store)
Duration = Annotated[float, Field(description="seconds to sample (hosts cap it, 30 s by default)")]
Hz = Annotated[int, Field(description="samples per second on each CPU, 1 to 999")]


@tool(
    "CPU profile",
    "Sample the kernel stacks on every CPU of the hosts (bpftrace's profile probe) for a while; "
    "folded stacks merged fleet-wide, each host's top stack, and the hosts that stand out.",
    STARTS_WORK,
    hide=("timeout",),
)
async def profile_run(
    rt: Runtime,
    pattern: Pattern = "all",
    duration: Duration = 10.0,
    hz: Hz = 49,
    timeout: float | None = None,
    progress: Progress | None = None,
) -> ProfileRun:
    """Profile every host for `duration` seconds at `hz`; short runs are answered merged, long ones become a job."""
    check_duration(duration, "policy profile_max_duration, 30 s by default")
    params = {"hz": hz, "duration": duration, "top": HOST_TOP}
    outcomes, elapsed = await run_timed(
        rt, pattern, protocol.PROFILE_START, params, duration, timeout, _outcome, progress
    )
    result = _result(rt, outcomes, elapsed, hz, duration)
    job = rt.jobs.start("profile_run", pattern, outcomes, hz=hz, duration=duration, result_tool="profile_result")
    if job is not None:
        result.job_id = job.job_id
        result.note = (
            f"{len(job.host_jobs)} host(s) still sampling: profile_result('{job.job_id}') merges their "
            "stacks when done; job_status and job_cancel work too"
        )
    return result


@tool("CPU profile result", "Merged stacks of a profile_run job once its hosts are done.", REMOTE_READ)
async def profile_result(
    rt: Runtime,
    job_id: str,
    wait: Wait = 0.0,
    progress: Progress | None = None,
) -> ProfileRun:
    """A profile_run job's result: its hosts' stacks merged once they are done (waits up to `wait` s)."""
    job = rt.jobs.get(job_id, "profile_run")
    params = {"top": HOST_TOP}
    outcomes, elapsed = await poll_timed(rt, job, protocol.PROFILE_RESULT, params, wait, _outcome, progress)
    hz, duration = job.detail.get("hz"), job.detail.get("duration")
    result = _result(
        rt,
        outcomes,
        elapsed,
        hz if isinstance(hz, int) else 0,
        float(duration) if isinstance(duration, (int, float)) else 0.0,
    )
    result.job_id = job.job_id
    return result


def _outcome(host: str, status: protocol.ProfileStatus) -> HostOutcome:
    """A profile's status as this host's outcome: finished hosts group together, their folded stacks ride along."""
    outcome = outcome_from_job(host, status)
    if not failed_run(outcome, status.get("error")) and status["state"] != "running":
        folded = status.get("folded_output_id")
        outcome.output, outcome.next_cursor, outcome.total_lines = None, None, None
        outcome.output_id = output_ref(host, folded) if folded else outcome.output_id
        outcome.key = f"{outcome.status}:{status['state']}"
        outcome.extra["profile"] = status
    return outcome


def _result(rt: Runtime, outcomes: list[HostOutcome], elapsed: int, hz: int, duration: float) -> ProfileRun:
    fanout = group_outcomes(outcomes, elapsed, rt.settings.page_chars)
    result = ProfileRun(**fanout.model_dump(), hz=hz, duration=duration)
    per_host = {o.host: o.extra["profile"] for o in outcomes if o.status == "ok" and "profile" in o.extra}
    if per_host:
        result.profile = merge_profiles(per_host)
        result.outlier_rule = OUTLIER_RULE
        result.view = {"stacks": flame_stacks(stack_counts(per_host))}
    return result
