"""CPU time and memory of other processes, by /proc: a controller's workers, the rig's agents, a
`crashfleet serve` and its workers. Used by fanout.py."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid: int, children: bool = False) -> float:
    """CPU seconds (user + system) of a live process; with `children`, plus those of its reaped
    children (an agent's catalogue commands). 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    used = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return used / TICK


def total_cpu(pids: Iterable[int], children: bool = False) -> float:
    return sum(cpu(pid, children) for pid in pids)


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory in MB (0 when the process is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0.0)


def children_of(pid: int, word: str) -> list[int]:
    """Live child processes of `pid` whose command line holds `word` (a server's workers)."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and word.encode() in command:
            found.append(int(entry))
    return found
