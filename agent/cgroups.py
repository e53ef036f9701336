"""Kernel-enforced budgets for the agent's children: a cgroup per child (memory, pids, cpu).

Every sandboxed child enters a group of the agent's own subtree before it execs (sandbox._enter).
memory.max counts all the child can pin (its memory, its private tmpfs, shared memory, memfds,
pipes, BPF maps) and swap is off, pids.max its processes, cpu.max its CPU where policy bounds it.
Each agent has one subtree (`agent-PID-START`), made at its first child where the host allows
(cgroup_host.py: cgroup v2, a delegated systemd scope, or v1 hierarchies), its groups made and
removed by cgroup_tree.py, and all of it removed when the agent ends (a dead agent's by the next).

Where none is writable (a non-root agent, a v2 cgroup shared with other processes, no memory
controller), `problem()` says why and the sandbox is partial: children keep rlimits and a sized
tmpfs only. Nothing here runs in a forked child but `Group.procs` paths being written.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import threading
from typing import Optional, Tuple

from .cgroup_host import ANCHOR, SLICE, Layout, cgroup_mounts, discover, scope_argv, setup
from .cgroup_tree import Budget, Group, Rel, Tree

__all__ = ["ANCHOR", "SLICE", "Budget", "Group", "Layout", "Rel", "Tree", "cgroup_mounts", "discover", "scope_argv"]

# -- the agent's one subtree, set up at the first child ------------------------------------

_lock = threading.Lock()
_tree: Optional[Tree] = None
_failed: Optional[str] = None
_found: Optional[Tuple[Optional[Layout], str]] = None


def found() -> Tuple[Optional[Layout], str]:
    """discover(), once."""
    global _found
    if _found is None:
        _found = discover()
    return _found


def problem() -> Optional[str]:
    """Why children get no cgroup budgets here, or None."""
    layout, why = found()
    if layout is None:
        return why
    return _failed


def describe() -> str:
    layout, why = found()
    return why if layout is not None and _failed is None else "none: %s" % (_failed or why)


def tree() -> Optional[Tree]:
    """The agent's subtree, created at the first call; None (and problem() says why) when refused."""
    global _tree, _failed
    with _lock:
        if _tree is not None or _failed is not None:
            return _tree
        layout, _ = found()
        if layout is None:
            return None
        try:
            _tree = setup(layout)
        except (OSError, subprocess.SubprocessError) as exc:
            _failed = "the agent could not create its cgroups: %s" % exc
            return None
        atexit.register(close)
        return _tree


def close() -> None:
    """Remove the agent's subtree (every group, every process left in one). A child started after
    this (none should be: the agent is stopping) would get a new subtree, which the next agent's
    sweep removes."""
    global _tree
    with _lock:
        current, _tree = _tree, None
    if current is not None:
        current.close()
        if current.layout.mode in ("root", "v1"):
            for base in current.bases.values():
                try:
                    os.rmdir(os.path.dirname(base))  # the shared anchor, when no other agent uses it
                except OSError:
                    pass
