"""Fleet jobs: work still running on some hosts after a tool returned.

The registry is kept on disk beside the audit log, so a controller that restarts (or was
killed) still knows its jobs; their hosts' agents keep them for the job lease (agent/lease.py).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from .errors import UsageError

log = logging.getLogger(__name__)
MAX_JOBS = 200  # oldest finished jobs are forgotten beyond this
JobState = Literal["running", "done", "cancelled"]


@dataclass
class FleetJob:
    job_id: str
    tool: str
    pattern: str
    host_jobs: dict[str, str]  # host -> the agent's job id
    started: float = field(default_factory=time.time)
    state: JobState = "running"
    detail: dict[str, object] = field(default_factory=dict)


class JobRegistry:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.jobs: dict[str, FleetJob] = self._load()
        start = max((int(j[1:]) for j in self.jobs if j[1:].isdigit()), default=0) + 1
        self._ids = itertools.count(start)

    def add(self, tool: str, pattern: str, host_jobs: dict[str, str], **detail: object) -> FleetJob:
        job = FleetJob(f"J{next(self._ids)}", tool, pattern, host_jobs, detail=detail)
        self.jobs[job.job_id] = job
        self._trim()
        self.save()
        return job

    def set_state(self, job: FleetJob, state: JobState) -> None:
        if job.state != state:
            job.state = state
            self.save()

    def newest_first(self) -> list[FleetJob]:
        return list(reversed(self.jobs.values()))

    def get(self, job_id: str) -> FleetJob:
        job = self.jobs.get(job_id)
        if job is None:
            known = ", ".join(self.jobs) or "none"
            raise UsageError(f"unknown job_id {job_id!r}", f"jobs_list shows the jobs (known: {known})")
        return job

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp.write_text(json.dumps([asdict(j) for j in self.jobs.values()], default=str))
            tmp.replace(self.path)
        except OSError as exc:
            log.warning("cannot save the job registry to %s: %s", self.path, exc)

    def _load(self) -> dict[str, FleetJob]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            entries = json.loads(self.path.read_text())
            jobs = [FleetJob(**entry) for entry in entries]
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring the job registry %s: %s", self.path, exc)
            return {}
        return {job.job_id: job for job in jobs}

    def _trim(self) -> None:
        finished = [j for j in self.jobs.values() if j.state != "running"]
        for job in finished[: max(0, len(self.jobs) - MAX_JOBS)]:
            del self.jobs[job.job_id]
