"""One rooted exception hierarchy; turned into MCP tool errors only at the boundary."""

from __future__ import annotations

from typing import Any


class CrashfleetError(Exception):
    """Anything a person can act on: a message and, when known, what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(CrashfleetError):
    """Bad tool arguments."""


class HostError(CrashfleetError):
    """One host failed; `status` is how the fan-out reports it, `rule` the policy rule that refused, if one did."""

    status = "failed"

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        kind: str = "failed",
        stderr_tail: str | None = None,
        exit_status: int | None = None,
        rule: str | None = None,
    ) -> None:
        super().__init__(message, hint)
        self.kind = kind
        self.stderr_tail = stderr_tail
        self.exit_status = exit_status
        self.rule = rule


class Unreachable(HostError):
    status = "unreachable"


class AgentCallError(HostError):
    """The agent answered a call with an error."""

    def __init__(self, message: str, hint: str | None, kind: str, data: dict[str, Any]) -> None:
        rule = data.get("rule")
        super().__init__(message, hint, kind=kind, rule=str(rule) if rule else None)
        self.data = data


class LinkClosed(HostError):
    """The agent process ended (or the channel dropped) while we needed it; `started_job` is the
    agent's id of a job the failed call had started (it may run on, under the job lease)."""

    def __init__(self, message: str, hint: str | None = None, *, started_job: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, hint, **kwargs)
        self.started_job = started_job
