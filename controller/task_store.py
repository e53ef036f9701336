"""The MCP tasks this controller handed out: task id -> the fleet job behind it, kept on disk.

Task ids are bearer handles (the tasks extension: "MUST generate them with sufficient entropy"), so
they are random, not the job ids. The table sits beside the job registry: a restarted controller
still answers tasks/get for the tasks of its jobs (agent jobs reattach; its own work is gone, and the
task says so).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import json_table

log = logging.getLogger(__name__)
MAX_TASKS = 200  # as many as the job registry keeps jobs: the oldest are forgotten first


@dataclass
class TaskRecord:
    task_id: str
    job_id: str
    tool: str
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    status: str = "working"


class TaskStore:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.tasks: dict[str, TaskRecord] = self._load()

    def create(self, job_id: str, tool: str) -> TaskRecord:
        record = TaskRecord(secrets.token_urlsafe(24), job_id, tool)
        self.tasks[record.task_id] = record
        for old in list(self.tasks)[: max(0, len(self.tasks) - MAX_TASKS)]:
            del self.tasks[old]
        self.save()
        return record

    def get(self, task_id: str) -> TaskRecord | None:
        return self.tasks.get(task_id)

    def moved(self, record: TaskRecord, status: str) -> None:
        """The task's status as last seen; lastUpdatedAt changes only when it does."""
        if record.status != status:
            record.status, record.updated = status, time.time()
            self.save()

    def save(self) -> None:
        if self.path is not None:
            json_table.save(self.path, [asdict(r) for r in self.tasks.values()], "task table")

    def _load(self) -> dict[str, TaskRecord]:
        if self.path is None:
            return {}
        try:
            records = [TaskRecord(**entry) for entry in json_table.load(self.path, "task table")]
        except TypeError as exc:
            log.warning("ignoring the task table %s: %s", self.path, exc)
            return {}
        return {r.task_id: r for r in records}
