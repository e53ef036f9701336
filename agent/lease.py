"""Jobs that outlive a dropped link: the agent stays for a lease, and its controller reattaches.

A controller says who it is in `hello` (`controller`: a key it keeps across restarts). The
agent then listens on DIR/run/KEY-BUILD.sock (0600, in the agent dir the launcher checked).
When its stdin ends while jobs run, it stays up to `job_lease` seconds. The controller's
next agent for this host, started over a new SSH session, finds that socket at its own
`hello` and becomes a byte relay to the old agent, which answers everything from then on:
its jobs, sessions and outputs are whole. Only the newest connection gets answers; replies
to requests of a superseded connection are dropped (that controller gave up on them).
A different build never attaches (the socket's name holds the build): the old agent's jobs
then end with its lease. Past the lease the agent stops its jobs, as at any exit.

The key names one controller process (or its restart) and one inventory host: two controllers
of one user, or one machine under two inventory names, never share an agent. A listening agent
holds a lock on KEY-BUILD.lock for its life; a socket whose lock nobody holds belongs to an agent
that died, and is removed without ever being connected to.
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import threading
import time
from typing import Any, BinaryIO, Callable, Dict, Optional

KEY_RE = re.compile(r"[0-9a-f]{8,64}\Z")
RELAY_CHUNK = 65536


class Busy(Exception):
    """Another agent of this key holds its lock: it is starting to listen, or listens."""


class Listener:
    """The agent's attach socket; reached through /proc/self/fd so a long DIR still fits sun_path."""

    def __init__(self, run_dir: str, name: str, on_attach: Callable[[socket.socket], None]) -> None:
        self._lock_fd = _hold(run_dir, name)
        self._dir_fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
        self.path = os.path.join(run_dir, name)
        try:
            os.unlink(self.path)  # we hold its lock: a socket file there is a dead agent's
        except FileNotFoundError:
            pass
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            self._sock.bind(_short(self._dir_fd, name))
        finally:
            os.umask(old_umask)
        self._sock.listen(4)
        self._on_attach = on_attach
        threading.Thread(target=self._accept, daemon=True, name="lease-accept").start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            if _peer_uid(conn) != os.geteuid():
                conn.close()  # 0600 already keeps others out; belt and braces
                continue
            self._on_attach(conn)

    def close(self) -> None:
        for path in (self.path, _lock_path(self.path)):
            try:
                os.unlink(path)
            except OSError:
                pass
        self._sock.close()
        os.close(self._dir_fd)
        os.close(self._lock_fd)


def socket_name(key: str, build: str) -> str:
    return "%s-%s.sock" % (key, build)


def run_dir(base_dir: str) -> str:
    path = os.path.join(base_dir, "run")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def connect_existing(directory: str, name: str) -> Optional[socket.socket]:
    """A live older agent of this controller, or None. Stale sockets in the dir (their agent
    died: nobody holds their lock) are removed first, never connected to."""
    remove_stale(directory)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(_short(fd, name))
        return sock
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        try:
            os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
            pass
        return None
    except OSError:
        sock.close()
        return None
    finally:
        os.close(fd)


def relay(sock: socket.socket, first: bytes, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Pass bytes both ways between our controller and the old agent until either side ends."""

    def back() -> None:
        while True:
            try:
                chunk = sock.recv(RELAY_CHUNK)
            except OSError:
                chunk = b""
            if not chunk:
                break
            try:
                stdout.write(chunk)
                stdout.flush()
            except (OSError, ValueError):
                break
        try:
            stdout.close()  # the old agent is gone: so is this link
        except OSError:
            pass

    answers = threading.Thread(target=back, daemon=True, name="relay-back")
    answers.start()
    try:
        sock.sendall(first)
        read = getattr(stdin, "read1", stdin.read)
        while True:
            chunk = read(RELAY_CHUNK)
            if not chunk:
                break
            sock.sendall(chunk)
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_WR)  # the old agent sees this connection end: its lease starts again
    except OSError:
        pass
    answers.join()
    sock.close()


class Lifeline:
    """Which connection is current, and whether the agent should still live without one."""

    def __init__(self, lease: float, running_jobs: Callable[[], int]) -> None:
        self.lease = lease
        self._running_jobs = running_jobs
        self._cond = threading.Condition()
        self.generation = 0
        self.connected = False
        self.dropped_at = 0.0
        self.listening = False
        self.relayed = False
        self.attaches = 0
        self._keep = False  # jobs ran when the link dropped: stay the lease, even if they end meanwhile

    def connect(self) -> int:
        """A connection starts; it is now the one that gets answers. Returns its generation."""
        with self._cond:
            self.generation += 1
            self.connected = True
            if self.generation > 1:
                self.attaches += 1
            self._cond.notify_all()
            return self.generation

    def is_current(self, generation: int) -> bool:
        return generation == self.generation

    def ended(self, generation: int) -> None:
        with self._cond:
            if generation == self.generation:
                self.connected = False
                self.dropped_at = time.monotonic()
                self._keep = self._running_jobs() > 0
                self._cond.notify_all()

    def wait(self) -> str:
        """Block until the agent should exit; returns why."""
        with self._cond:
            while True:
                if self.connected:
                    self._cond.wait()
                    continue
                if self.relayed:
                    return "relay ended"
                if not (self.listening and self.lease > 0 and self._keep):
                    return "stdin closed"
                left = self.dropped_at + self.lease - time.monotonic()
                if left <= 0:
                    return "its controller did not come back within the job lease (%gs)" % self.lease
                self._cond.wait(left)

    def release(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """The controller leaves on purpose: no lease, its jobs end with its link."""
        with self._cond:
            self.lease = 0.0
            self._cond.notify_all()
        return {"lease_s": 0}

    def status(self) -> Dict[str, Any]:
        return {"lease_s": self.lease, "attaches": self.attaches, "listening": self.listening}


def remove_stale(directory: str) -> None:
    """Remove the sockets of agents that died without closing their listener (SIGKILL, a crash)."""
    for entry in sorted(os.listdir(directory)):
        if not entry.endswith(".sock"):
            continue
        path = os.path.join(directory, entry)
        try:
            fd = os.open(_lock_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # held: its agent lives
        else:
            for stale in (path, _lock_path(path)):
                try:
                    os.unlink(stale)
                except OSError:
                    pass
        finally:
            os.close(fd)


def _hold(directory: str, name: str) -> int:
    """Lock NAME's lock file for as long as this agent listens (the kernel drops it if we die).
    Busy when another agent holds it. The lock must be on the file the path names (a sweeper may
    have removed it meanwhile), or a later sweeper would take our live socket for a stale one."""
    path = _lock_path(os.path.join(directory, name))
    for _ in range(8):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise Busy(path) from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise Busy(path)


def _lock_path(socket_path: str) -> str:
    return socket_path[: -len(".sock")] + ".lock" if socket_path.endswith(".sock") else socket_path + ".lock"


def _short(dir_fd: int, name: str) -> str:
    return "/proc/self/fd/%d/%s" % (dir_fd, name)


def _peer_uid(conn: socket.socket) -> int:
    import struct

    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])
