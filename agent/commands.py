"""The catalogue of plain commands the agent runs by name.

Callers pick a name, never an argv: every argv here is fixed and read-only, so
no text from the controller reaches a command line.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional

from . import protocol
from .errors import AgentError


class Command(NamedTuple):
    argv: List[str]
    description: str
    follow: bool = False  # runs until its duration ends (a sampler), not to completion
    default_duration: Optional[float] = None


CATALOG: Dict[str, Command] = {
    "uname": Command(["uname", "-a"], "kernel name, release, version and arch"),
    "uptime": Command(["uptime"], "uptime and load averages"),
    "os-release": Command(["cat", "/etc/os-release"], "distribution identification"),
    "cmdline": Command(["cat", "/proc/cmdline"], "kernel command line"),
    "dmesg": Command(["dmesg", "--ctime", "--nopager"], "kernel ring buffer"),
    "journal-kernel": Command(
        ["journalctl", "-k", "-b", "--no-pager", "-n", "5000"], "kernel messages of this boot from journald"
    ),
    "free": Command(["free", "-m"], "memory usage in MiB"),
    "meminfo": Command(["cat", "/proc/meminfo"], "detailed memory counters"),
    "df": Command(["df", "-hT"], "filesystem usage"),
    "ps": Command(
        ["ps", "-eo", "pid,ppid,user,stat,pcpu,pmem,rss,wchan:24,lstart,args", "--sort=-pcpu"],
        "processes, busiest first",
    ),
    "sockets": Command(["ss", "-tanpi"], "TCP sockets with process and internals"),
    "sockstat": Command(["cat", "/proc/net/sockstat"], "socket counters"),
    "lsmod": Command(["cat", "/proc/modules"], "loaded kernel modules"),
    "mounts": Command(["cat", "/proc/mounts"], "mounted filesystems"),
    "vmstat": Command(
        ["vmstat", "-w", "1"], "memory, CPU and run-queue sampled every second", follow=True, default_duration=10.0
    ),
    "dmesg-follow": Command(
        ["dmesg", "--ctime", "--follow", "--nopager"],
        "new kernel messages as they arrive",
        follow=True,
        default_duration=30.0,
    ),
}


def resolve(name: str, allowed: Optional[List[str]], denied: List[str]) -> Command:
    """The command called `name`, if it exists and policy allows it."""
    if name not in CATALOG:
        raise AgentError(
            protocol.UNKNOWN_COMMAND,
            "no command %r in the catalogue" % name,
            hint="known commands: " + ", ".join(sorted(CATALOG)),
        )
    if name in denied or (allowed is not None and name not in allowed):
        raise AgentError(
            protocol.POLICY_DENIED,
            "policy on this host forbids command %r" % name,
            rule="policy.commands",
            hint="the host's /etc/crashfleet/agent-policy.json decides this",
        )
    return CATALOG[name]
