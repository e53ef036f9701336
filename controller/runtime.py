"""What every tool needs, built once per server (or CLI) process."""

from __future__ import annotations

import getpass
import resource
from dataclasses import dataclass, field

from .audit import AuditLog
from .fleet import Fleet
from .jobs import JobRegistry
from .recent import RecentOutputs, RecentResults
from .settings import Settings


@dataclass
class Runtime:
    settings: Settings
    fleet: Fleet
    jobs: JobRegistry
    outputs: RecentOutputs = field(default_factory=lambda: RecentOutputs())
    results: RecentResults = field(default_factory=lambda: RecentResults())

    @classmethod
    def create(cls, settings: Settings, who: str | None = None) -> Runtime:
        raise_fd_limit()
        audit = AuditLog(settings.audit_path(), who or getpass.getuser())
        # The controller's state lives beside its audit log (tests give each controller its own).
        fleet = Fleet(settings, audit)
        return cls(settings, fleet, JobRegistry(fleet, settings.audit_path().with_name("jobs.json")))

    async def close(self) -> None:
        await self.fleet.close()


def raise_fd_limit() -> None:
    """One SSH connection is one descriptor: lift the soft limit (often 1024) to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
