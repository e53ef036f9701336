"""Which stage of reaching a host is under way, so that a deadline names the stage it hit.

Every stage (queue, connect, handshake, auth, upload, start, hello, call) shares the host's
one deadline: none has a limit of its own. The fan-out gives each host a `Stage`; the code
that moves through the stages marks them on whatever Stage the current task carries.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field

HINTS = {
    "queued": "the fan-out window was full the whole time: raise the deadline or CRASHFLEET_FANOUT",
    "connect": "no TCP connection: is the host up and its sshd listening, or is a firewall dropping packets?",
    "ssh handshake": "TCP connected but sshd did not finish the key exchange: sshd may be hung or overloaded",
    "ssh auth": "sshd did not finish authentication: check the host's sshd (PAM, DNS lookups) and its load",
    "agent start": "the login worked but the agent did not start: the host's shell profile or python may hang",
    "agent upload": "the agent upload did not finish: the link is slow or the host's disk is stalled",
    "hello": "the agent started but did not say hello: the host may be overloaded",
    "call": "the agent is reachable but the call did not finish: it may be slow; raise the timeout",
    "liveness": "an earlier call timed out and the agent has not answered a ping since: the host may be gone",
}


@dataclass
class Stage:
    name: str = "queued"
    since: float = field(default_factory=time.monotonic)

    def mark(self, name: str) -> None:
        self.name, self.since = name, time.monotonic()

    def hint(self) -> str:
        return HINTS.get(self.name, "")


_current: contextvars.ContextVar[Stage | None] = contextvars.ContextVar("crashfleet_stage", default=None)


def begin() -> Stage:
    """A fresh Stage for the current task (and the tasks it starts)."""
    stage = Stage()
    _current.set(stage)
    return stage


def mark(name: str) -> None:
    """Say which stage the current host's work is in (a no-op outside a fan-out)."""
    stage = _current.get()
    if stage is not None:
        stage.mark(name)
