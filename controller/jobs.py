"""Fleet jobs: work still running on some hosts after a tool returned.

The registry makes every change of a job's state, and polls a job's hosts: a host whose agent
no longer has the job (it ended with an earlier agent) answers "lost" there, the same way for
every tool. It is kept on disk beside the audit log, so a controller that restarts (or was
killed) still knows its jobs; their hosts' agents keep them for the job lease (agent/lease.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from crashfleet.inventory import Host

from . import json_table
from .errors import JobGone, JobLost, UsageError
from .fleet import Fleet
from .grouping import HostOutcome, group_outcomes
from .models import FanoutResult
from .progress import Progress

log = logging.getLogger(__name__)
MAX_JOBS = 200  # oldest finished jobs are forgotten beyond this


class JobState(StrEnum):
    RUNNING = "running"
    DONE = "done"  # every host ended (or a tool stopped it and kept what it made: capture_stop)
    CANCELLED = "cancelled"  # job_cancel


# The changes a job may go through; any other is ignored (a late poll cannot revive a job).
TRANSITIONS = {
    JobState.RUNNING: {JobState.DONE, JobState.CANCELLED},
    JobState.DONE: {JobState.CANCELLED},  # job_cancel after it ended: as the caller asked
    JobState.CANCELLED: set(),
}
HostAsk = Callable[[Host, str], Awaitable[HostOutcome]]  # a host and the agent's job id there -> its outcome


ANSWER = "answer"  # FleetJob.kind of a call's work that went on past its answer (controller.budget)


@dataclass
class FleetJob:
    job_id: str
    tool: str
    pattern: str
    host_jobs: dict[str, str]  # host -> the agent's job id ("answer": the controller still works on it)
    started: float = field(default_factory=time.time)
    state: JobState = JobState.RUNNING
    detail: dict[str, object] = field(default_factory=dict)
    kind: str = "agent"  # agent: jobs on the hosts; answer: the controller's own work, in this process
    lost: dict[str, str] = field(default_factory=dict)  # host -> why its work is gone (agent or controller ended)


@dataclass
class Answer:
    """An answer job's work: its task, and what it has so far (given the job id) while it runs."""

    task: asyncio.Task[FanoutResult]
    so_far: Callable[[str], FanoutResult]
    stop: Callable[[], object]


class JobRegistry:
    def __init__(self, fleet: Fleet, path: Path | None = None) -> None:
        self.fleet = fleet
        self.path = path
        self.answers: dict[str, Answer] = {}
        self.jobs: dict[str, FleetJob] = self._load()
        start = max((int(j[1:]) for j in self.jobs if j[1:].isdigit()), default=0) + 1
        self._ids = itertools.count(start)

    def start(
        self, tool: str, pattern: str, outcomes: list[HostOutcome], *, every_started: bool = False, **detail: object
    ) -> FleetJob | None:
        """A fleet job for the hosts a tool left running (with every_started, all hosts that started
        one: a capture is summarised on every host, finished or not); None when there are none."""
        host_jobs = {
            o.host: str(o.extra["job_id"])
            for o in outcomes
            if o.extra.get("job_id") is not None and (every_started or o.status == "running")
        }
        return self.add(tool, pattern, host_jobs, **detail) if host_jobs else None

    def add(self, tool: str, pattern: str, host_jobs: dict[str, str], **detail: object) -> FleetJob:
        return self._register(FleetJob(f"J{next(self._ids)}", tool, pattern, host_jobs, detail=detail))

    def _register(self, job: FleetJob) -> FleetJob:
        self.jobs[job.job_id] = job
        self._trim()
        self.save()
        return job

    async def each_host(
        self,
        job: FleetJob,
        ask: HostAsk,
        *,
        progress: Progress | None = None,
        deadline: float | None = None,
        ticking: float | None = None,
    ) -> tuple[list[HostOutcome], int]:
        """Ask every host of the job; a host whose agent lost the job says so. When no host runs it
        any more, the job is done."""

        async def one(host: Host) -> HostOutcome:
            agent_job = job.host_jobs[host.name]
            try:
                return await ask(host, agent_job)
            except JobGone as exc:
                lost = _lost(host.name, agent_job, exc)
                job.lost[host.name] = lost.message or "lost"
                return lost

        hosts = [self.fleet.host(name) for name in job.host_jobs]
        outcomes, elapsed = await self.fleet.fan_out(hosts, one, deadline=deadline, progress=progress, ticking=ticking)
        if all(o.status != "running" for o in outcomes):
            self.finish(job)
        if job.lost:
            self.save()
        return outcomes, elapsed

    def later(
        self,
        tool: str,
        pattern: str,
        hosts: list[str],
        work: Awaitable[FanoutResult],
        so_far: Callable[[str], FanoutResult],
        stop: Callable[[], object],
        **detail: object,
    ) -> FleetJob:
        """A job for a call's work that goes on after the call answered (controller.budget):
        job_status gives `so_far(job_id)` while it runs, then the complete answer."""
        job = FleetJob(f"J{next(self._ids)}", tool, pattern, dict.fromkeys(hosts, ANSWER), detail=detail, kind=ANSWER)
        self._register(job)
        task = asyncio.ensure_future(work)
        self.answers[job.job_id] = Answer(task, so_far, stop)
        task.add_done_callback(lambda done: self._move(job, JobState.CANCELLED if done.cancelled() else JobState.DONE))
        return job

    def answer(self, job: FleetJob) -> FanoutResult:
        """An answer job's complete answer (the same shape as its tool's), or what it has so far."""
        work = self.answers.get(job.job_id)
        if work is None:
            result = _answer_lost(job)
            job.lost = dict.fromkeys(job.host_jobs, result.errors[0].message if result.errors else "lost")
            return result
        if not work.task.done() or work.task.cancelled():
            return noted(work.so_far(job.job_id), job, cancelled=work.task.cancelled())
        return work.task.result()  # its own error, if the work failed, as the tool would have raised it

    def cancel_answer(self, job: FleetJob) -> FanoutResult:
        """Stop an answer job's work (the hosts' calls end with it); what it had."""
        work = self.answers.get(job.job_id)
        if work is not None and not work.task.done():
            work.task.cancel()
            work.stop()
        self.cancel(job)
        return self.answer(job)

    def finish(self, job: FleetJob) -> None:
        self._move(job, JobState.DONE)

    def cancel(self, job: FleetJob) -> None:
        self._move(job, JobState.CANCELLED)

    def _move(self, job: FleetJob, state: JobState) -> None:
        if state in TRANSITIONS[job.state]:
            job.state = state
            self.save()

    def newest_first(self) -> list[FleetJob]:
        return list(reversed(self.jobs.values()))

    def get(self, job_id: str, tool: str | None = None) -> FleetJob:
        """The job; with `tool`, only a job that tool started (bpftrace_result reads bpftrace_run's)."""
        job = self.jobs.get(job_id)
        if job is None:
            known = ", ".join(self.jobs) or "none"
            raise UsageError(f"unknown job_id {job_id!r}", f"jobs_list shows the jobs (known: {known})")
        if tool is not None and job.tool != tool:
            raise UsageError(f"job {job_id} is a {job.tool} job, not {tool}", "job_status shows any job")
        return job

    def save(self) -> None:
        if self.path is not None:
            json_table.save(self.path, [asdict(j) for j in self.jobs.values()], "job registry")

    def _load(self) -> dict[str, FleetJob]:
        if self.path is None:
            return {}
        try:
            entries = json_table.load(self.path, "job registry")
            jobs = [FleetJob(**dict(entry, state=JobState(entry["state"]))) for entry in entries]
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring the job registry %s: %s", self.path, exc)
            return {}
        for job in jobs:  # an earlier process's own work ended with it
            if job.kind == ANSWER and job.state is JobState.RUNNING:
                job.state = JobState.DONE
        return {job.job_id: job for job in jobs}

    def _trim(self) -> None:
        finished = [j for j in self.jobs.values() if j.state is not JobState.RUNNING]
        for job in finished[: max(0, len(self.jobs) - MAX_JOBS)]:
            del self.jobs[job.job_id]
            self.answers.pop(job.job_id, None)


R = TypeVar("R", bound=FanoutResult)


def noted(result: R, job: FleetJob, cancelled: bool = False) -> R:
    """What an answer job has so far, saying where its complete answer will be."""
    result.job_id = job.job_id
    still = "was cancelled" if cancelled else "is still working"
    result.note = f"{job.tool} {still}; job_status('{job.job_id}') gives its complete answer when it ends"
    return result


def _answer_lost(job: FleetJob) -> FanoutResult:
    """An answer job of an earlier controller process: its work ended with that process."""
    message = f"{job.tool}'s work for job {job.job_id} ended with the controller process that ran it (it restarted)"
    outcomes = [HostOutcome(host, "failed", key="lost", message=message) for host in job.host_jobs]
    result = group_outcomes(outcomes, 0, 4000)
    result.job_id = job.job_id
    result.note = f"call {job.tool} again for a fresh answer"
    return result


def _lost(host: str, agent_job: str, exc: JobGone) -> HostOutcome:
    """A job its host no longer runs: an earlier agent ran it (its output so far is kept), or the
    agent that ran it ended with it."""
    if isinstance(exc, JobLost):
        output_id = exc.data.get("output_id")
        ref = f"{host}:{output_id}" if output_id else None
        return HostOutcome(host, "failed", key="lost", message=exc.message, hint=exc.hint, output_id=ref)
    message = (
        f"job {agent_job} is gone from {host}: the agent that ran it ended (killed, or its "
        "job lease ran out with no controller attached)"
    )
    return HostOutcome(host, "failed", key="lost", message=message)
