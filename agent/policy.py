"""What this host lets the agent do. Enforced here: the agent is the boundary.

The policy file belongs to the host's administrator. A file the controller could
have written itself is refused, so a controller cannot widen its own rights.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

from . import domains, protocol
from .errors import AgentError

DEFAULT_PATH = "/etc/crashfleet/agent-policy.json"
CORE: Dict[str, Any] = {
    "allow_commands": None,  # None: the whole catalogue
    "deny_commands": [],
    "max_duration": 600.0,  # seconds, any job
    "max_output_bytes": 128 << 20,  # per output (a 100 MB crash or dmesg output fits)
    "max_store_bytes": 1 << 30,  # all outputs together
    "job_lease": 120.0,  # seconds jobs outlive a dropped controller link (0: they end with it)
    "max_jobs": 16,  # jobs running at once (commands, captures, bpftrace, long crash commands)
    "sandbox": True,  # False runs tools without the OS sandbox (benchmarks, debugging only)
    "require_sandbox": False,  # True: refuse to start tools when the sandbox is only partial
    "sandbox_cpu_seconds": 7200,  # CPU a crash or drgn session may use in its life
    "sandbox_memory_bytes": 16 << 30,  # address space of crash and drgn
    "sandbox_file_bytes": 1 << 30,  # largest file a tool may write (its work dir, private /tmp)
    "sandbox_processes": 64,  # processes of drgn's user (nobody); each child's pids.max: this plus the CPUs
    # Kernel-enforced budgets (cgroups, agent/cgroups.py): memory counts tmpfs and shared memory, no swap.
    "sandbox_session_memory_bytes": 4 << 30,  # a dump session's crash and drgn together, their tmpfs included
    "sandbox_tool_memory_bytes": 1 << 30,  # one bpftrace, tcpdump, catalogue command, download or regex search
    "sandbox_total_memory_bytes": None,  # all the agent's children together; None: half of this host's RAM
    "sandbox_tmpfs_bytes": 256 << 20,  # a child's private /tmp, /var/tmp and /dev/shm together (in its budget)
    "sandbox_drgn_cpus": 1.0,  # CPUs drgn code may keep busy (cpu.max of its processes); None: no bound
    "regex_cpu_seconds": 5,  # CPU one regex search or grep filter may use
}
# Each domain adds its own keys (agent/domains/*.py).
DEFAULTS: Dict[str, Any] = domains.policy_defaults(CORE)


class Policy:
    def __init__(self, settings: Dict[str, Any], source: Optional[str]) -> None:
        self.settings = settings
        self.source = source

    @property
    def allow_commands(self) -> Optional[List[str]]:
        allowed = self.settings["allow_commands"]
        return None if allowed is None else [str(name) for name in allowed]

    @property
    def deny_commands(self) -> List[str]:
        return list(self.settings["deny_commands"])

    @property
    def max_duration(self) -> float:
        return float(self.settings["max_duration"])

    def check_duration(self, duration: float) -> float:
        if duration <= 0:
            raise AgentError(protocol.BAD_PARAMS, "duration must be positive, got %s" % duration)
        if duration > self.max_duration:
            raise AgentError(
                protocol.POLICY_DENIED,
                "duration %ss is over this host's cap of %ss" % (duration, self.max_duration),
                hint="ask for %ss or less" % self.max_duration,
                rule="policy.duration",
            )
        return duration

    def summary(self) -> Dict[str, Any]:
        return dict(self.settings, source=self.source)


def load(path: Optional[str] = None) -> Policy:
    """Read the policy file if it exists and is trustworthy; defaults otherwise."""
    path = path or DEFAULT_PATH
    if not os.path.exists(path):
        return Policy(dict(DEFAULTS), None)
    _check_owner(path)
    try:
        with open(path) as handle:
            data = json.load(handle)
    except ValueError as exc:
        raise AgentError(protocol.BAD_POLICY, "policy file %s is not valid JSON: %s" % (path, exc)) from None
    unknown = set(data) - set(DEFAULTS)
    if unknown:
        raise AgentError(
            protocol.BAD_POLICY,
            "policy file %s has unknown keys: %s" % (path, ", ".join(sorted(unknown))),
            hint="known keys: " + ", ".join(sorted(DEFAULTS)),
        )
    return Policy(dict(DEFAULTS, **data), path)


def _check_owner(path: str) -> None:
    info = os.stat(path)
    trusted = {0, os.geteuid()}
    if info.st_uid not in trusted or info.st_mode & 0o022:
        raise AgentError(
            protocol.BAD_POLICY,
            "policy file %s must be owned by root (or the agent's user) and not writable by group or others" % path,
        )
