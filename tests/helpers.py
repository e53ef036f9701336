"""Process inspection shared by tests: find what crashfleet started, by /proc.

Built on the rig's /proc helpers (tests.rig.procs); re-exported here for the tests.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

from tests.rig.procs import alive, cmdline, descendants, parent

__all__ = ["agent_pids", "alive", "cmdline", "cmdlines", "cwd", "descendants", "parent", "pids_matching", "wait_until"]


def cmdlines() -> dict[int, str]:
    """Every live process with a command line (kernel threads have none)."""
    found = {pid: cmdline(pid) for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if alive(pid)}
    return {pid: cmd for pid, cmd in found.items() if cmd}


def cwd(pid: int) -> str:
    """The process's working directory, '' when gone or not ours to read."""
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def agent_pids(marker: str) -> list[int]:
    """Live agent processes whose command line mentions `marker` (a rig or agent dir)."""
    return [pid for pid, cmd in cmdlines().items() if "crashfleet-agent-" in cmd and marker in cmd]


def pids_matching(*words: str) -> list[int]:
    return [pid for pid, cmd in cmdlines().items() if all(w in cmd for w in words) and pid != os.getpid()]


async def wait_until(predicate: Callable[[], object], timeout: float = 20.0) -> bool:
    """Poll predicate on the event loop until it is true (True) or timeout seconds pass (False)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
