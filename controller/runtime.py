"""What every tool needs, built once per server (or CLI) process."""

from __future__ import annotations

import getpass
import resource
from dataclasses import dataclass, field

from .audit import AuditLog
from .fleet import Fleet
from .identity import Identity, claim
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
    def create(cls, settings: Settings, who: str | None = None, role: str = "cli") -> Runtime:
        """role: "serve" for an MCP server, "cli" for a terminal command; each live process of a
        role is a controller of its own to the agents (controller.identity)."""
        raise_fd_limit()
        # The controller's state lives beside its audit log (tests give each controller its own).
        state = settings.audit_path().parent
        identity = claim(settings.controller_key(), role, state / "controllers")
        audit = AuditLog(settings.audit_path(), who or getpass.getuser())
        fleet = Fleet(settings, audit, identity)
        return cls(settings, fleet, JobRegistry(fleet, state / f"jobs-{identity.slot}.json"))

    @property
    def identity(self) -> Identity:
        return self.fleet.identity

    async def close(self) -> None:
        await self.fleet.close()
        self.fleet.identity.release()


def raise_fd_limit() -> None:
    """One SSH connection is one descriptor: lift the soft limit (often 1024) to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
