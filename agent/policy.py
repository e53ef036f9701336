"""What this host lets the agent do. Enforced here: the agent is the boundary.

The policy file belongs to the host's administrator. A file the controller could
have written itself is refused, so a controller cannot widen its own rights.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

from . import protocol
from .errors import AgentError

DEFAULT_PATH = "/etc/crashfleet/agent-policy.json"
DEFAULTS: Dict[str, Any] = {
    "allow_commands": None,  # None: the whole catalogue
    "deny_commands": [],
    "max_duration": 600.0,  # seconds, any job
    "max_output_bytes": 128 << 20,  # per output (a 100 MB crash or dmesg output fits)
    "max_store_bytes": 1 << 30,  # all outputs together
    "job_lease": 120.0,  # seconds jobs outlive a dropped controller link (0: they end with it)
    "max_jobs": 16,  # jobs running at once (commands, captures, bpftrace, long crash commands)
    "capture_dir": "/var/tmp/crashfleet-captures",  # pcap rings; each capture's dir belongs to capture_user
    "capture_user": None,  # tcpdump drops root to this user (None: tcpdump, else nobody)
    "capture_ring_bytes": 64 << 20,  # disk cap of one capture (a ring of 4 files)
    "capture_keep": 8,  # finished captures kept on disk, newest first
    "max_captures": 2,  # captures running at once
    "capture_total_bytes": 512 << 20,  # running rings plus kept captures; the oldest kept go first
    "capture_min_free_bytes": 64 << 20,  # a capture stops when its filesystem has less free
    "dump_dirs": None,  # dirs dumps may be read from; None: /var/crash + kdump's path
    "vmlinux_dirs": [],  # extra dirs searched for a dump's vmlinux
    "live_kernel": False,  # True: crash_open(live=true) reads the running kernel (/proc/kcore)
    "drgn_code": True,  # False: drgn runs only the bundled analysis scripts
    "drgn_python": None,  # interpreter for drgn workers; None: the agent's own
    "debuginfod_urls": None,  # servers for a dump's vmlinux by build id; None: /etc/debuginfod/*.urls + DEBUGINFOD_URLS
    "debuginfod_cache_dir": "/var/cache/crashfleet/debuginfod",  # where fetched debuginfo is kept
    "debuginfod_cache_bytes": 4 << 30,  # the cache's quota; the oldest entries go first to make room
    "max_dump_sessions": 8,  # crash/drgn sessions open at once
    "dump_session_idle": 1800.0,  # seconds before an unused session is closed
    "bpftrace_enabled": True,
    "bpftrace_max_duration": 60.0,  # seconds per bpftrace run (also capped by max_duration)
    "bpftrace_max_output_bytes": 8 << 20,  # a run writing more is stopped
    "bpftrace_mount_tracefs": True,  # mount tracefs when missing (bpftrace needs it)
    "bpftrace_strlen": 64,  # BPFTRACE_STRLEN
    "bpftrace_map_keys_max": 4096,  # BPFTRACE_MAP_KEYS_MAX
    "bpftrace_max_probes": 512,  # BPFTRACE_MAX_PROBES and BPFTRACE_MAX_BPF_PROGS
    "sandbox": True,  # False runs tools without the OS sandbox (benchmarks, debugging only)
    "require_sandbox": False,  # True: refuse to start tools when the sandbox is only partial
    "sandbox_cpu_seconds": 7200,  # CPU a crash or drgn session may use in its life
    "sandbox_memory_bytes": 16 << 30,  # address space of crash and drgn
    "sandbox_file_bytes": 1 << 30,  # largest file a tool may write (its work dir, private /tmp)
    "sandbox_processes": 64,  # processes of drgn's user (nobody) while a worker runs
    "regex_cpu_seconds": 5,  # CPU one regex search or grep filter may use
}


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
