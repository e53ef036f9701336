"""What every tool needs, built once per server (or CLI) process."""

from __future__ import annotations

import getpass
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
        audit = AuditLog(settings.audit_path(), who or getpass.getuser())
        return cls(settings, Fleet(settings, audit), JobRegistry())

    async def close(self) -> None:
        await self.fleet.close()
