"""Where the agent's cgroup subtree goes on this host, and making it (once, at the first child).

- cgroup v2, no systemd: /crashfleet/agent-PID-START (the root's controllers enabled down to it);
- cgroup v2, systemd: the agent's own cgroup once it is delegated to it (Delegate=yes): the
  agent asks systemd for a scope of its own (crashfleet.slice/crashfleet-agent-PID.scope)
  unless it runs in one already, moves itself into a leaf of it (v2 keeps processes out of
  inner cgroups) and puts its children beside that leaf;
- cgroup v1 (hybrid hosts, where the controllers are bound to v1 hierarchies): OWN/crashfleet/
  agent-... in the memory, pids and cpu hierarchies, OWN being the agent's own cgroup in each
  (so a host's accounting of the agent's cgroup still counts its children).

`discover()` only reads; `setup()` writes, and raises OSError where the host refuses.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from typing import Dict, List, NamedTuple, Optional, Tuple

from .cgroup_tree import CONTROLLERS, Tree, read, remove_tree, write

ANCHOR = "crashfleet"
SLICE = "crashfleet.slice"
SCOPE_WAIT = 5.0  # seconds for systemd to move the agent into its new scope


class Layout(NamedTuple):
    """Where the agent's subtree goes, found by reading (nothing written yet)."""

    version: int  # 2 (unified) or 1
    mode: str  # "root" (v2, /crashfleet), "delegated" (v2, own cgroup), "scope" (v2, ask systemd), "v1"
    bases: Dict[str, str]  # hierarchy ("unified", or a v1 controller) -> the dir our subtree goes under
    controllers: Tuple[str, ...]


def own_cgroups() -> Dict[str, str]:
    """/proc/self/cgroup: "unified" -> the v2 path, and each v1 controller -> its path."""
    found: Dict[str, str] = {}
    for line in read("/proc/self/cgroup").splitlines():
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
    for line in read("/proc/self/mountinfo").splitlines():
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
        available = read(os.path.join(unified[0], "cgroup.controllers")).split()
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


# -- setting the subtree up (once, at the first child) --------------------------------------


def _start_time(pid: int) -> Optional[str]:
    stat = read("/proc/%d/stat" % pid)
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
    others = [p for p in read(os.path.join(own, "cgroup.procs")).split() if p != str(os.getpid())]
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
    write(os.path.join(leaf, "cgroup.procs"), str(os.getpid()))
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
