"""One rooted exception hierarchy; turned into MCP tool errors only at the boundary."""

from __future__ import annotations

from typing import Any

from crashfleet.agent import protocol as P


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


class ConnectLost(Unreachable):
    """The connection dropped mid-handshake (sshd overloaded, MaxStartups): worth another try."""


class LinkClosed(HostError):
    """The agent process ended (or the channel dropped) while we needed it; `started_job` is the
    agent's id of a job the failed call had started (it may run on, under the job lease)."""

    def __init__(self, message: str, hint: str | None = None, *, started_job: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, hint, **kwargs)
        self.started_job = started_job


# -- the agent's error kinds, grouped by what a caller does about them --------------


class BadRequest(AgentCallError):
    """The call was wrong (a name, a path, a filter the host does not know): fix it and ask again."""


class BadParams(BadRequest):
    """A parameter is missing, of the wrong type or out of range."""


class StoreRefused(BadRequest):
    """An output read refused: the output is gone, or the cursor or pattern is bad: start over or fix it."""


class ProgramRefused(AgentCallError):
    """The bpftrace program or library tool cannot run as given: change the program."""


class PolicyDenied(AgentCallError):
    """A rule of the host's policy said no (`rule` names it): ask for less, or change the policy."""


class TryLater(AgentCallError):
    """A cap is reached or the resource is busy: wait, or end something, then ask again."""


class JobGone(AgentCallError):
    """The job is not on its host any more."""


class UnknownJob(JobGone):
    """The agent never knew the job, or the agent that ran it ended with it."""


class JobLost(JobGone):
    """An earlier agent ran the job and ended; its output so far is kept (`data["output_id"]`)."""


class SessionGone(AgentCallError):
    """The dump session was closed, expired or ended with its agent: open the dump again."""


class NoDump(AgentCallError):
    """No dump in the host's dump dirs."""


class HostUnfit(AgentCallError):
    """The host lacks what the call needs (a tool, a kernel feature, a privilege, a sane policy): fix the host."""


class HostToolFailed(AgentCallError):
    """A program the agent ran on the host failed: its message (and stderr) say why."""


class AgentBug(AgentCallError):
    """The agent hit a bug (`data["traceback_tail"]`): report it."""


_GROUPS: dict[type[AgentCallError], tuple[str, ...]] = {
    BadRequest: (
        P.BAD_REQUEST,
        P.TOO_LARGE,
        P.UNKNOWN_METHOD,
        P.UNKNOWN_COMMAND,
        P.UNKNOWN_SCRIPT,
        P.UNKNOWN_INTERFACE,
        P.UNRESOLVED,
        P.BAD_FILTER,
        P.NOT_FOUND,
        P.NOT_A_DUMP,
        P.NO_RELEASE,
        P.WRONG_VMLINUX,
    ),
    BadParams: (P.BAD_PARAMS, P.BAD_ARGUMENT),
    StoreRefused: (P.UNKNOWN_OUTPUT, P.BAD_CURSOR, P.STALE_CURSOR, P.BAD_REGEX),
    ProgramRefused: (
        P.BAD_PROGRAM,
        P.UNSAFE_PROGRAM,
        P.COMPILE_ERROR,
        P.UNKNOWN_PROBE,
        P.UNKNOWN_TOOL,
        P.TOOL_CANNOT_RUN,
    ),
    PolicyDenied: (P.POLICY_DENIED, P.REFUSED, P.UNSAFE_DIR, P.PATTERN_TOO_COSTLY),
    TryLater: (P.QUOTA_EXCEEDED, P.TOO_MANY_SESSIONS, P.BUSY, P.SHUTTING_DOWN),
    UnknownJob: (P.UNKNOWN_JOB,),
    JobLost: (P.JOB_LOST,),
    SessionGone: (P.UNKNOWN_SESSION,),
    NoDump: (P.NO_DUMP,),
    HostUnfit: (
        P.NOT_INSTALLED,
        P.TRACEFS_MISSING,
        P.SANDBOX_UNAVAILABLE,
        P.BAD_POLICY,
        P.NO_TCPDUMP,
        P.NOT_ROOT,
        P.NO_CAPTURE_USER,
        P.NO_KCORE,
        P.NO_CRASH,
        P.NO_VMLINUX,
        P.DRGN_TOO_OLD,
        P.DRGN_UNSUPPORTED,
    ),
    HostToolFailed: (
        P.EXEC_FAILED,
        P.TIMEOUT,
        P.OVER_CAP,
        P.ATTACH_FAILED,
        P.BPFTRACE_FAILED,
        P.BAD_CAPTURE,
        P.CRASH_FAILED,
        P.DRGN_FAILED,
        P.DEBUGINFOD_FAILED,
        P.DEBUGINFOD_WRONG_FILE,
    ),
    AgentBug: (P.INTERNAL,),
}
# The one table from an error's kind to its class; a kind not in it (a newer agent's) stays an AgentCallError.
KIND_CLASSES: dict[str, type[AgentCallError]] = {kind: cls for cls, kinds in _GROUPS.items() for kind in kinds}


def agent_error(message: str, hint: str | None, kind: str, data: dict[str, Any]) -> AgentCallError:
    """The exception for an agent's error reply, by its kind."""
    return KIND_CLASSES.get(kind, AgentCallError)(message, hint, kind, data)
