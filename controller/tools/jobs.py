"""jobs_list, job_status, job_cancel: fleet jobs left running by a tool."""

from __future__ import annotations

import time

from crashfleet.agent import protocol
from crashfleet.inventory import Host

from ..grouping import HostOutcome, fold, group_outcomes
from ..jobs import ANSWER, FleetJob
from ..models import FanoutResult, JobInfo, JobList
from ..progress import Progress
from ..registry import tool
from ..runtime import Runtime
from ..wiring import READ, REMOTE_READ, STOPS_WORK
from .common import outcome_from_job


@tool("List jobs", "List fleet jobs started by tools.", READ)
def jobs_list(rt: Runtime) -> JobList:
    return JobList(jobs=[_info(job) for job in rt.jobs.newest_first()])


@tool(
    "Job status",
    "A job's state per host, grouped, finished hosts with their first page; a call's unfinished work: its answer.",
    REMOTE_READ,
)
async def job_status(rt: Runtime, job_id: str, progress: Progress | None = None) -> FanoutResult:
    """Each host's state of the job, grouped; finished hosts come with their first page. A call's
    work that went on past its answer gives that tool's complete answer (or what it has so far)."""
    job = rt.jobs.get(job_id)
    if job.kind == ANSWER:
        return rt.jobs.answer(job)
    return await _each_host(rt, job, protocol.JOB_STATUS, progress)


@tool("Cancel a job", "Stop a job on every host (kills its processes); output so far is kept.", STOPS_WORK)
async def job_cancel(rt: Runtime, job_id: str, progress: Progress | None = None) -> FanoutResult:
    """Stop the job on every host (its whole process group); finished hosts keep their output."""
    job = rt.jobs.get(job_id)
    if job.kind == ANSWER:
        return rt.jobs.cancel_answer(job)
    result = await _each_host(rt, job, protocol.JOB_CANCEL, progress)
    rt.jobs.cancel(job)
    return result


async def _each_host(rt: Runtime, job: FleetJob, method: str, progress: Progress | None) -> FanoutResult:
    async def ask(host: Host, agent_job: str) -> HostOutcome:
        status = await rt.fleet.call(host, method, {"job_id": agent_job, "page_bytes": rt.settings.page_chars})
        return outcome_from_job(host.name, status)

    outcomes, elapsed = await rt.jobs.each_host(job, ask, progress=progress)
    result = group_outcomes(outcomes, elapsed, rt.settings.page_chars)
    result.job_id = job.job_id
    return result


def _info(job: FleetJob) -> JobInfo:
    return JobInfo(
        job_id=job.job_id,
        tool=job.tool,
        pattern=job.pattern,
        hosts=fold(job.host_jobs),
        state=job.state.value,
        started=job.started,
        elapsed_s=round(time.time() - job.started, 1),
        detail=dict(job.detail),
    )
