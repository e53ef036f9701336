"""Fleet jobs: work still running on some hosts after a tool returned."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from .errors import UsageError

MAX_JOBS = 200  # oldest finished jobs are forgotten beyond this


@dataclass
class FleetJob:
    job_id: str
    tool: str
    pattern: str
    host_jobs: dict[str, str]          # host -> the agent's job id
    started: float = field(default_factory=time.time)
    state: str = "running"             # running | done | cancelled
    detail: dict[str, object] = field(default_factory=dict)


class JobRegistry:
    def __init__(self) -> None:
        self.jobs: dict[str, FleetJob] = {}
        self._ids = itertools.count(1)

    def add(self, tool: str, pattern: str, host_jobs: dict[str, str], **detail: object) -> FleetJob:
        job = FleetJob(f"J{next(self._ids)}", tool, pattern, host_jobs, detail=detail)
        self.jobs[job.job_id] = job
        self._trim()
        return job

    def get(self, job_id: str) -> FleetJob:
        job = self.jobs.get(job_id)
        if job is None:
            known = ", ".join(self.jobs) or "none"
            raise UsageError(f"unknown job_id {job_id!r}", f"jobs_list shows the jobs (known: {known})")
        return job

    def _trim(self) -> None:
        finished = [j for j in self.jobs.values() if j.state != "running"]
        for job in finished[: max(0, len(self.jobs) - MAX_JOBS)]:
            del self.jobs[job.job_id]
