"""A task's state, read from the fleet job behind it: the same answers job_status and the follow-up
tools give, in the shape the task's own tool answers (what tasks/get's `result` must be)."""

from __future__ import annotations

import typing
from dataclasses import dataclass

from mcp.types import CallToolResult
from pydantic import BaseModel

from . import registry
from .grouping import fold
from .jobs import ANSWER, FleetJob, JobState
from .models import FanoutResult
from .runtime import Runtime
from .task_store import TaskRecord
from .wiring import answer


@dataclass
class TaskState:
    status: str  # working, completed, cancelled, failed
    message: str
    result: CallToolResult | None = None


async def state(rt: Runtime, record: TaskRecord) -> TaskState:
    job = rt.jobs.jobs.get(record.job_id)
    if job is None:
        return TaskState("failed", f"job {record.job_id} behind this task is no longer known to this controller")
    if job.kind == ANSWER:
        return await _answer_job(rt, job)
    return await _agent_job(rt, job)


async def _answer_job(rt: Runtime, job: FleetJob) -> TaskState:
    """The call's own work, going on in this process (or gone with an earlier one)."""
    so_far = rt.jobs.answer(job)
    work = rt.jobs.answers.get(job.job_id)
    if work is None:  # an earlier controller process ran it
        return TaskState("failed", _reason(job))
    if not work.task.done():
        return TaskState("working", _progress(job, so_far))
    if work.task.cancelled():
        return TaskState("cancelled", f"job {job.job_id} was cancelled")

    async def complete() -> BaseModel:
        whole = rt.jobs.answer(job)  # raises the work's own error, as the call would have
        return _unwrapped(job, whole)

    return TaskState("completed", f"{job.tool} answered (job {job.job_id})", await answer(complete))


async def _agent_job(rt: Runtime, job: FleetJob) -> TaskState:
    """Hosts still running (tracing, sampling): the follow-up tool merges their answers."""
    if job.state is JobState.CANCELLED:
        return TaskState("cancelled", f"job {job.job_id} was cancelled")
    spec = registry.find(str(job.detail["result_tool"]))
    result = await answer(lambda: spec.fn(rt, job_id=job.job_id))
    if job.lost and set(job.lost) >= set(job.host_jobs):
        return TaskState("failed", _reason(job))
    if job.state is JobState.DONE:
        return TaskState("completed", f"every host of job {job.job_id} is done", result)
    running = (result.structured_content or {}).get("summary", {}).get("running", len(job.host_jobs))
    return TaskState("working", f"{running} of {len(job.host_jobs)} host(s) still running job {job.job_id}")


def _progress(job: FleetJob, so_far: FanoutResult) -> str:
    if job.detail.get("single"):
        return f"{job.tool} still working on {job.pattern} (job {job.job_id})"
    done = so_far.summary.total - so_far.summary.running
    return f"{job.tool}: {done} of {so_far.summary.total} host(s) answered (job {job.job_id})"


def _reason(job: FleetJob) -> str:
    """Why, with the hosts that said it: the first three reasons."""
    by_reason: dict[str, list[str]] = {}
    for host, why in job.lost.items():
        by_reason.setdefault(why, []).append(host)
    said = [f"{fold(hosts)}: {why}" for why, hosts in list(by_reason.items())[:3]] or ["its work is gone"]
    return f"job {job.job_id} cannot finish: " + "; ".join(said)


def _unwrapped(job: FleetJob, whole: FanoutResult) -> BaseModel:
    """A single operation's job holds its answer as its host's data: the tool's own model again."""
    if not job.detail.get("single") or not whole.groups or whole.groups[0].data is None:
        return whole
    model = typing.get_type_hints(registry.find(job.tool).fn)["return"]
    return model.model_validate(whole.groups[0].data)  # type: ignore[no-any-return]
