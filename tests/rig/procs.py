"""Linux /proc helpers: verify, signal and await the rig's sshd processes by pid.

The rig never signals by name; every pid is checked against /proc first so a
recycled pid or another rig's sshd is never touched.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")
GONE_STATES = frozenset({"Z", "X", "x"})  # a zombie has already exited


def cmdline(pid: int) -> str:
    """Return argv joined by spaces (sshd rewrites it as its process title); '' if gone."""
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _stat(pid: int) -> tuple[str, str, int] | None:
    """Return (comm, state, ppid) from /proc/PID/stat; comm may contain ')' so split at the last."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    head, _, tail = text.rpartition(")")
    fields = tail.split()
    if len(fields) < 2:
        return None
    return head.partition("(")[2], fields[0], int(fields[1])


def state(pid: int) -> str | None:
    """Return the one-letter process state ('S', 'T' = stopped, ...), None when gone."""
    st = _stat(pid)
    return None if st is None else st[1]


def parent(pid: int) -> int | None:
    """The parent pid, None when gone."""
    st = _stat(pid)
    return None if st is None else st[2]


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (zombies already exited)."""
    st = state(pid)
    return st is not None and st not in GONE_STATES


def runs_config(pid: int, config: Path) -> bool:
    """True when pid is a live sshd started with `-f config` (guards against pid reuse)."""
    return alive(pid) and f" -f {config} " in f" {cmdline(pid)} "


def _children_map() -> dict[int, list[int]]:
    """Map ppid -> child pids from one scan of /proc."""
    tree: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        st = _stat(int(entry.name))
        if st is not None and st[1] not in GONE_STATES:
            tree.setdefault(st[2], []).append(int(entry.name))
    return tree


def descendants(roots: Iterable[int]) -> list[int]:
    """Return every live process below roots, parents before children.

    Below a listener these are the per-connection sshd processes and the
    commands they run.  They must be found while the listener lives: sshd's
    children call setsid() and their title ("sshd: root@notty") does not name
    the config, so once orphaned they cannot be attributed to a rig safely.
    """
    tree = _children_map()
    found: list[int] = []
    todo = list(roots)
    while todo:
        kids = tree.get(todo.pop(0), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def listening_sockets() -> dict[tuple[str, int], int]:
    """Map (IPv4 address, port) -> socket inode of every TCP listener, from /proc/net/tcp."""
    found: dict[tuple[str, int], int] = {}
    for line in (PROC / "net" / "tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A":  # 0A = LISTEN
            continue
        addr_hex, port_hex = fields[1].split(":")
        address = socket.inet_ntoa(bytes.fromhex(addr_hex)[::-1])  # little-endian on x86/arm
        found[(address, int(port_hex, 16))] = int(fields[9])
    return found


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets pid holds open."""
    inodes: set[int] = set()
    try:
        fds = list((PROC / str(pid) / "fd").iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def send(pids: Iterable[int], sig: signal.Signals) -> None:
    """Signal each pid, ignoring ones that have already gone."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Poll until every pid has exited; return the ones still alive at the deadline."""
    left = [p for p in pids if alive(p)]
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        time.sleep(0.01)
        left = [p for p in left if alive(p)]
    return left


def wait_state(pids: Iterable[int], wanted: str, timeout: float = 2.0) -> None:
    """Poll until each live pid reports state wanted (SIGSTOP is asynchronous)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while alive(pid) and state(pid) != wanted and time.monotonic() < deadline:
            time.sleep(0.005)


def terminate(pids: list[int], grace: float = 5.0) -> list[int]:
    """SIGTERM (plus SIGCONT for paused ones), SIGKILL after grace; return survivors."""
    send(pids, signal.SIGTERM)
    send(pids, signal.SIGCONT)
    left = wait_gone(pids, grace)
    if left:
        send(left, signal.SIGKILL)
        left = wait_gone(left, 2.0)
    return left
