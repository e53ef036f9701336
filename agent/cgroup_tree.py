"""The agent's cgroup subtree once it exists: groups with their budgets, made and removed.

A `Group` is one cgroup in every hierarchy that carries one of the controllers (one dir in
cgroup v2, up to three in v1); a child enters it by writing "0" into its `cgroup.procs`
files (sandbox._enter). `Tree` makes groups below the agent's own dir with their limits, and
removes them with whatever is left in them. Where the subtree goes: cgroup_host.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Dict, List, NamedTuple, Optional, Tuple

if TYPE_CHECKING:
    from .cgroup_host import Layout

CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD = 100000  # microseconds: cpu.max's period
REMOVE_WAIT = 5.0  # seconds to wait for a killed group's processes to leave it
Rel = Tuple[str, ...]


class Budget(NamedTuple):
    """What one group may use; None leaves that resource to the groups above."""

    memory: Optional[int] = None  # bytes of memory (swap none): memory.max
    pids: Optional[int] = None  # processes and threads: pids.max
    cpus: Optional[float] = None  # CPUs' worth of time: cpu.max


def read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


# -- one group ------------------------------------------------------------------------


class Group:
    """One cgroup of the agent's subtree, in every hierarchy that carries one of its controllers."""

    def __init__(self, dirs: Dict[str, str], version: int) -> None:
        self.dirs = dirs
        self.version = version

    def procs(self) -> List[str]:
        """The files a child writes "0" to, to enter this group (all hierarchies)."""
        return [os.path.join(d, "cgroup.procs") for d in self.dirs.values()]

    def pids(self) -> List[int]:
        found: List[int] = []
        for d in self.dirs.values():
            found += [int(p) for p in read(os.path.join(d, "cgroup.procs")).split() if p.isdigit()]
        return sorted(set(found))

    def events(self) -> Dict[str, int]:
        """Counters that say which budget ended a child: oom_kill (memory), pids_max (forks refused)."""
        memory = self.dirs.get("unified") or self.dirs.get("memory") or "/nonexistent"
        pids = self.dirs.get("unified") or self.dirs.get("pids")
        mem = _fields(read(os.path.join(memory, "memory.events" if self.version == 2 else "memory.oom_control")))
        forks = _fields(read(os.path.join(pids, "pids.events"))) if pids else {}
        return {"oom_kill": mem.get("oom_kill", 0), "pids_max": forks.get("max", 0)}

    def memory_peak(self) -> Optional[int]:
        memory = self.dirs.get("unified") or self.dirs.get("memory")
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        text = read(os.path.join(memory or "/nonexistent", name)).strip()
        return int(text) if text.isdigit() else None


def _fields(text: str) -> Dict[str, int]:
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            out[key] = int(value)
    return out


# -- the agent's subtree -----------------------------------------------------------------


class Tree:
    """The agent's subtree: groups by relative path, created on demand, removed with everything in them."""

    def __init__(self, layout: Layout, bases: Dict[str, str]) -> None:
        self.layout = layout
        self.version = layout.version
        self.bases = bases  # hierarchy -> the agent's own dir (agent-PID-START)
        self._lock = threading.Lock()

    def root(self) -> Group:
        return Group(dict(self.bases), self.version)

    def at(self, rel: Rel) -> Group:
        """The group at rel, whether or not it exists (nothing is created)."""
        return Group({key: os.path.join(base, *rel) for key, base in self.bases.items()}, self.version)

    def group(self, rel: Rel, budget: Optional[Budget] = None) -> Group:
        """The group at rel (created with its budget, or the existing one as it is). Only a group
        with a CPU budget is a CPU group of its own (v1: in the cpu hierarchy; v2: with the cpu
        controller on above it): the scheduler weighs a group as one task, so a tool alone in one
        would get less of a busy host than its threads did beside everyone else."""
        cpu = budget is not None and budget.cpus is not None
        with self._lock:
            if cpu:
                self._cpu_above()
            dirs = {}
            for key, base in self.bases.items():
                if key == "cpu" and not (cpu or os.path.isdir(os.path.join(base, *rel))):
                    continue
                path = base
                for depth, part in enumerate(rel, 1):
                    self._enable_below(path, cpu)
                    path = os.path.join(path, part)
                    if not os.path.isdir(path):
                        os.mkdir(path, 0o755)
                        if depth == len(rel) and budget is not None:
                            self._limit(key, path, budget)
                dirs[key] = path
            return Group(dirs, self.version)

    def remove(self, rel: Rel) -> None:
        """Kill what is left in the group and remove it with its subgroups."""
        with self._lock:
            for base in self.bases.values():
                remove_tree(os.path.join(base, *rel), self.version)

    def close(self) -> None:
        with self._lock:
            for base in self.bases.values():
                remove_tree(base, self.version)

    def limit_root(self, budget: Budget) -> None:
        for key, base in self.bases.items():
            self._limit(key, base, budget)

    def _cpu_above(self) -> None:
        """v2: cpu on the way down to the agent's dir (from /crashfleet's parent when the agent made
        it), enabled when the first group with a CPU budget is made, not before."""
        if self.version != 2:
            return
        anchor = os.path.dirname(self.bases["unified"])
        if self.layout.mode == "root":
            self._enable_below(os.path.dirname(anchor), True)
        self._enable_below(anchor, True)

    def _enable_below(self, path: str, cpu: bool = False) -> None:
        """v2: the controllers for path's children, one by one: cpu only on the way to a group
        with a CPU budget, and it may be refused (realtime processes in other cgroups): it is
        optional, memory and pids are not."""
        if self.version != 2:
            return
        have = read(os.path.join(path, "cgroup.subtree_control")).split()
        for controller in self.layout.controllers:
            if controller in have or (controller == "cpu" and not cpu):
                continue
            try:
                write(os.path.join(path, "cgroup.subtree_control"), "+" + controller)
            except OSError:
                if controller != "cpu":
                    raise

    def _limit(self, key: str, path: str, budget: Budget) -> None:
        """Write a fresh group's limits; a controller this hierarchy lacks is skipped."""
        writes: List[Tuple[str, str]] = []
        v2 = self.version == 2
        if budget.memory is not None and key in ("unified", "memory"):
            if v2:
                writes += [("memory.max", str(budget.memory)), ("memory.swap.max", "0")]
            else:
                writes += [("memory.limit_in_bytes", str(budget.memory))]
                writes += [("memory.memsw.limit_in_bytes", str(budget.memory))]
        if budget.pids is not None and key in ("unified", "pids"):
            writes.append(("pids.max", str(budget.pids)))
        if budget.cpus is not None and key in ("unified", "cpu"):
            quota = max(1000, int(budget.cpus * CPU_PERIOD))
            if v2:
                writes.append(("cpu.max", "%d %d" % (quota, CPU_PERIOD)))
            else:
                writes += [("cpu.cfs_period_us", str(CPU_PERIOD)), ("cpu.cfs_quota_us", str(quota))]
        for name, value in writes:
            target = os.path.join(path, name)
            if os.path.exists(target):  # memory.swap.max, memsw: only with swap accounting
                write(target, value)


def remove_tree(path: str, version: int) -> None:
    """Kill every process in path and below, then rmdir bottom-up; a missing dir is fine."""
    try:
        subdirs = [e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return
    for sub in subdirs:
        remove_tree(sub, version)
    deadline = time.monotonic() + REMOVE_WAIT
    while True:
        pids = [int(p) for p in read(os.path.join(path, "cgroup.procs")).split() if p.isdigit()]
        if not pids:
            break
        if version == 2 and os.path.exists(os.path.join(path, "cgroup.kill")):
            _try_write(os.path.join(path, "cgroup.kill"), "1")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)  # the killed processes are leaving: wait for their exit to finish
    try:
        os.rmdir(path)
    except OSError:
        pass  # gone already, or still busy: the next agent's sweep removes it


def _try_write(path: str, value: str) -> None:
    try:
        write(path, value)
    except OSError:
        pass
