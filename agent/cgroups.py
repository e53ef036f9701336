"""Kernel-enforced budgets for the agent's children: a cgroup per child (memory, pids, cpu).

Every sandboxed child enters a group of the agent's own subtree before it execs (sandbox._enter).
memory.max counts all the child can pin (its memory, its private tmpfs, shared memory, memfds,
pipes, BPF maps) and swap is off, pids.max its processes, cpu.max its CPU where policy bounds it.
The subtree (`agent-PID-START`, removed when the agent ends; a dead agent's is removed by the next):

- cgroup v2, no systemd: /crashfleet/agent-... (the root's controllers enabled down to it);
- cgroup v2, systemd: the agent's own cgroup once it is delegated to it (Delegate=yes): the agent
  asks systemd for a scope of its own (crashfleet.slice/crashfleet-agent-PID.scope) unless it runs
  in one already, moves itself into a leaf of it (v2 keeps processes out of inner cgroups) and
  puts its children beside that leaf;
- cgroup v1 (hybrid hosts, where the controllers are bound to v1 hierarchies): OWN/crashfleet/
  agent-... in the memory, pids and cpu hierarchies, OWN being the agent's own cgroup in each
  (so a host's accounting of the agent's cgroup still counts its children).

Where none is writable (a non-root agent, a v2 cgroup shared with other processes, no memory
controller), `problem()` says why and the sandbox is partial: children keep rlimits and a sized
tmpfs only. Nothing here runs in a forked child but `Group.procs` paths being written.
"""

from __future__ import annotations

import atexit
import errno
import os
import signal
import subprocess
import threading
import time
from typing import Dict, List, NamedTuple, Optional, Tuple

CONTROLLERS = ("memory", "pids", "cpu")
ANCHOR = "crashfleet"
SLICE = "crashfleet.slice"
CPU_PERIOD = 100000  # microseconds: cpu.max's period
REMOVE_WAIT = 5.0  # seconds to wait for a killed group's processes to leave it
SCOPE_WAIT = 5.0  # seconds for systemd to move the agent into its new scope
Rel = Tuple[str, ...]


class Budget(NamedTuple):
    """What one group may use; None leaves that resource to the groups above."""

    memory: Optional[int] = None  # bytes of memory (swap none): memory.max
    pids: Optional[int] = None  # processes and threads: pids.max
    cpus: Optional[float] = None  # CPUs' worth of time: cpu.max


class Layout(NamedTuple):
    """Where the agent's subtree goes, found by reading (nothing written yet)."""

    version: int  # 2 (unified) or 1
    mode: str  # "root" (v2, /crashfleet), "delegated" (v2, own cgroup), "scope" (v2, ask systemd), "v1"
    bases: Dict[str, str]  # hierarchy ("unified", or a v1 controller) -> the dir our subtree goes under
    controllers: Tuple[str, ...]


# -- reading what the host has ------------------------------------------------------


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def own_cgroups() -> Dict[str, str]:
    """/proc/self/cgroup: "unified" -> the v2 path, and each v1 controller -> its path."""
    found: Dict[str, str] = {}
    for line in _read("/proc/self/cgroup").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            found["unified"] = parts[2]
        for name in parts[1].split(","):
            if name in CONTROLLERS:
                found[name] = parts[2]
    return found


def cgroup_mounts() -> Dict[str, Tuple[str, str]]:
    """/proc/self/mountinfo: "unified" and each v1 controller -> (mount point, root in the hierarchy)."""
    found: Dict[str, Tuple[str, str]] = {}
    for line in _read("/proc/self/mountinfo").splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        root, point = fields[3], fields[4].replace("\\040", " ")
        if tail[0] == "cgroup2":
            found.setdefault("unified", (point, root))
        elif tail[0] == "cgroup":
            for name in tail[2].split(","):
                if name in CONTROLLERS:
                    found.setdefault(name, (point, root))
    return found


def _under(mount: Tuple[str, str], path: str) -> Optional[str]:
    """The dir of cgroup `path` in a hierarchy mounted at mount (None if the mount does not show it)."""
    point, root = mount
    if root != "/" and not (path == root or path.startswith(root.rstrip("/") + "/")):
        return None
    rest = path[len(root) :] if root != "/" else path
    return point.rstrip("/") + "/" + rest.strip("/") if rest.strip("/") else point


def _systemd() -> bool:
    return os.path.isdir("/run/systemd/system")


def _delegated(path: str) -> bool:
    """systemd marks the cgroups it delegates (Delegate=yes) with an xattr."""
    for name in ("trusted.delegate", "user.delegate"):
        try:
            if os.getxattr(path, name) == b"1":
                return True
        except OSError:
            continue
    return False


def discover() -> Tuple[Optional[Layout], str]:
    """Where budgets can live on this host, or None and why not. Reads only."""
    if os.geteuid() != 0:
        return None, "the agent is not root: it cannot create cgroups"
    own, mounts = own_cgroups(), cgroup_mounts()
    unified = mounts.get("unified")
    if unified is not None and "unified" in own:
        available = _read(os.path.join(unified[0], "cgroup.controllers")).split()
        if "memory" in available:
            return _v2(unified, own["unified"], available)
    if "memory" in mounts and "memory" in own:
        bases = {}
        for name in CONTROLLERS:
            if name in mounts and name in own:
                where = _under(mounts[name], own[name])
                if where is not None:
                    bases[name] = os.path.join(where, ANCHOR)
        if "memory" not in bases:
            return None, "the v1 memory hierarchy does not show the agent's cgroup %s" % own["memory"]
        if not os.access(os.path.dirname(bases["memory"]), os.W_OK):
            return None, "the v1 memory hierarchy is read-only here"
        return Layout(1, "v1", bases, tuple(bases)), "cgroup v1 (%s)" % ", ".join(bases)
    return None, "no memory controller: neither cgroup v2 with memory nor a v1 memory hierarchy is mounted"


def _v2(mount: Tuple[str, str], path: str, available: List[str]) -> Tuple[Optional[Layout], str]:
    controllers = tuple(c for c in CONTROLLERS if c in available)
    where = _under(mount, path)
    if where is None or not os.access(mount[0], os.W_OK):
        return None, "cgroup v2 at %s is not writable by the agent" % mount[0]
    if _systemd():
        mode = "delegated" if _delegated(where) else "scope"
        how = "its delegated cgroup %s" % path if mode == "delegated" else "a delegated systemd scope in " + SLICE
        return Layout(2, mode, {"unified": where}, controllers), "cgroup v2, %s" % how
    if path == "/":
        return Layout(2, "root", {"unified": os.path.join(where, ANCHOR)}, controllers), "cgroup v2, /%s" % ANCHOR
    return Layout(2, "delegated", {"unified": where}, controllers), "cgroup v2, its own cgroup %s" % path


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
            found += [int(p) for p in _read(os.path.join(d, "cgroup.procs")).split() if p.isdigit()]
        return sorted(set(found))

    def events(self) -> Dict[str, int]:
        """Counters that say which budget ended a child: oom_kill (memory), pids_max (forks refused)."""
        memory = self.dirs.get("unified") or self.dirs.get("memory") or "/nonexistent"
        pids = self.dirs.get("unified") or self.dirs.get("pids")
        mem = _fields(_read(os.path.join(memory, "memory.events" if self.version == 2 else "memory.oom_control")))
        forks = _fields(_read(os.path.join(pids, "pids.events"))) if pids else {}
        return {"oom_kill": mem.get("oom_kill", 0), "pids_max": forks.get("max", 0)}

    def memory_peak(self) -> Optional[int]:
        memory = self.dirs.get("unified") or self.dirs.get("memory")
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        text = _read(os.path.join(memory or "/nonexistent", name)).strip()
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
        """The group at rel (created with its budget, or the existing one as it is)."""
        with self._lock:
            dirs = {}
            for key, base in self.bases.items():
                path = base
                for depth, part in enumerate(rel, 1):
                    self._enable_below(path)
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

    def _enable_below(self, path: str) -> None:
        """v2: the controllers for path's children, one by one: cpu may be refused (realtime
        processes in other cgroups) and is optional; memory and pids are not."""
        if self.version != 2:
            return
        have = _read(os.path.join(path, "cgroup.subtree_control")).split()
        for controller in self.layout.controllers:
            if controller in have:
                continue
            try:
                _write(os.path.join(path, "cgroup.subtree_control"), "+" + controller)
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
                _write(target, value)


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
        pids = [int(p) for p in _read(os.path.join(path, "cgroup.procs")).split() if p.isdigit()]
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
        _write(path, value)
    except OSError:
        pass


# -- setting the subtree up (once, at the first child) --------------------------------------


def _start_time(pid: int) -> Optional[str]:
    stat = _read("/proc/%d/stat" % pid)
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None


def agent_dir_name(pid: Optional[int] = None) -> str:
    pid = pid or os.getpid()
    return "agent-%d-%s" % (pid, _start_time(pid) or "0")


def _stale(name: str) -> bool:
    """An agent-PID-START dir whose agent is gone (its pid dead or reused)."""
    parts = name.split("-")
    if len(parts) != 3 or parts[0] != "agent" or not parts[1].isdigit():
        return False
    return _start_time(int(parts[1])) != parts[2]


def sweep(anchor: str, version: int) -> None:
    """Remove the subtrees of agents that died without removing their own (SIGKILL, a crash)."""
    try:
        names = os.listdir(anchor)
    except OSError:
        return
    for name in names:
        if _stale(name):
            remove_tree(os.path.join(anchor, name), version)


def setup(layout: Layout) -> Tree:
    """Create the agent's subtree (OSError when the host refuses)."""
    if layout.mode == "scope":
        layout = _into_scope(layout)
    if layout.mode == "delegated":
        layout = _vacate(layout)
    name = agent_dir_name()
    tree = Tree(layout, {key: os.path.join(anchor, name) for key, anchor in layout.bases.items()})
    for anchor, base in zip(layout.bases.values(), tree.bases.values()):
        for attempt in range(3):  # an ending agent may remove the shared anchor under us
            try:
                _make(tree, anchor, base)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
    return tree


def _make(tree: Tree, anchor: str, base: str) -> None:
    layout = tree.layout
    if layout.mode != "delegated-vacated":
        os.makedirs(anchor, mode=0o755, exist_ok=True)
        sweep(anchor, layout.version)
    if layout.version == 2:
        if layout.mode == "root":
            tree._enable_below(os.path.dirname(anchor))
        tree._enable_below(anchor)
    os.mkdir(base, 0o755)


def _vacate(layout: Layout) -> Layout:
    """v2 keeps processes out of cgroups whose children have controllers: the agent moves itself into
    OWN/agent, so OWN can hold its children. OWN must hold nobody else."""
    own = layout.bases["unified"]
    others = [p for p in _read(os.path.join(own, "cgroup.procs")).split() if p != str(os.getpid())]
    if others:
        raise OSError(
            errno.EBUSY,
            "the agent's cgroup %s holds other processes (%s): cgroup v2 cannot give children budgets below "
            "it; run the agent in a cgroup of its own (a systemd scope or service with Delegate=yes)"
            % (own, ", ".join(others[:5])),
        )
    leaf = os.path.join(own, "agent")
    if not os.path.isdir(leaf):
        os.mkdir(leaf, 0o755)
    _write(os.path.join(leaf, "cgroup.procs"), str(os.getpid()))
    return layout._replace(mode="delegated-vacated")


def scope_argv(pid: int) -> List[str]:
    """busctl's call asking systemd for a delegated scope holding `pid` (StartTransientUnit)."""
    return [
        "busctl",
        "call",
        "--quiet",
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "StartTransientUnit",
        "ssa(sv)a(sa(sv))",
        "crashfleet-agent-%d.scope" % pid,
        "fail",
        "4",
        "PIDs",
        "au",
        "1",
        str(pid),
        "Delegate",
        "b",
        "true",
        "Slice",
        "s",
        SLICE,
        "Description",
        "s",
        "crashfleet agent %d and its sandboxed children" % pid,
        "0",
    ]


def _into_scope(layout: Layout) -> Layout:
    """Ask systemd for a delegated scope of our own, and wait until we are in it."""
    pid = os.getpid()
    done = subprocess.run(
        scope_argv(pid), stdin=subprocess.DEVNULL, capture_output=True, timeout=30, env={"PATH": "/usr/bin:/bin"}
    )
    if done.returncode != 0:
        raise OSError(errno.EPERM, "systemd refused a delegated scope: %s" % done.stderr.decode()[-300:].strip())
    want = "/crashfleet-agent-%d.scope" % pid
    deadline = time.monotonic() + SCOPE_WAIT
    while not own_cgroups().get("unified", "").endswith(want):
        if time.monotonic() > deadline:
            raise OSError(errno.ETIMEDOUT, "systemd did not move the agent into %s" % want[1:])
        time.sleep(0.01)  # systemd moves us when its job runs
    mount = cgroup_mounts()["unified"]
    where = _under(mount, own_cgroups()["unified"]) or ""
    return layout._replace(mode="delegated", bases={"unified": where})


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
    """Remove the agent's subtree (every group, every process left in one)."""
    global _tree, _failed
    with _lock:
        current, _tree = _tree, None
        if current is not None:
            _failed = "the agent is stopping"  # no child is started past this point
    if current is not None:
        current.close()
        if current.layout.mode in ("root", "v1"):
            for base in current.bases.values():
                try:
                    os.rmdir(os.path.dirname(base))  # the shared anchor, when no other agent uses it
                except OSError:
                    pass
