"""Reading what a child sends, bounded: each byte scanned once, no line held past its cap.

The agent is the one unconfined process on the host; a child (drgn code, a flooding tool) must
not be able to grow its memory or make it rescan a growing buffer. `LineReader` reads a
protocol channel (the drgn worker's JSON lines): a line over its cap is a broken or hostile
peer. `Lines` splits a text stream (a job's output past its cap) and cuts long lines instead.
`run` is subprocess.run for the agent's own short children with capped output.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, List, Optional, Tuple

READ_CHUNK = 1 << 16


class CapExceeded(Exception):
    """A child went over one of its caps; `cap` names it ("line", "output", ...)."""

    def __init__(self, cap: str, message: str) -> None:
        super().__init__(message)
        self.cap = cap


class LineReader:
    """Lines from a pipe, at most `cap` bytes each (CapExceeded past it); `volume` counts all bytes."""

    def __init__(self, fd: int, cap: int) -> None:
        self.fd, self.cap = fd, cap
        self.volume = 0
        self.eof = False
        self._parts: List[bytes] = []
        self._size = 0
        self._ready: Deque[bytes] = deque()

    def readline(self, deadline: float) -> Optional[bytes]:
        """The next line (without its newline); None at EOF (self.eof) or when the deadline passes."""
        while not self._ready:
            if self.eof:
                return None
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            self._take(os.read(self.fd, READ_CHUNK))
        return self._ready.popleft()

    def drain(self, limit: int, quiet: float = 0.05) -> int:
        """Throw away what is waiting (written outside a call); CapExceeded past `limit` bytes. A
        pipe found holding data is drained until it stays empty for `quiet` seconds (its writer may
        be blocked on the full pipe); an empty one costs nothing."""
        dropped = len(b"".join(self._ready)) + self._size
        self._ready.clear()
        self._parts, self._size = [], 0
        wait = quiet if dropped else 0.0
        while not self.eof and select.select([self.fd], [], [], wait)[0]:
            wait = quiet
            chunk = os.read(self.fd, READ_CHUNK)
            self.eof = not chunk
            dropped += len(chunk)
            if dropped > limit:
                raise CapExceeded("idle", "wrote over %d bytes while no call was running" % limit)
        return dropped

    def _take(self, chunk: bytes) -> None:
        if not chunk:
            self.eof = True
            return
        self.volume += len(chunk)
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            self._add(chunk[start:end])
            self._ready.append(b"".join(self._parts))
            self._parts, self._size = [], 0
            start = end + 1
        self._add(chunk[start:])

    def _add(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size > self.cap:
            raise CapExceeded("line", "sent a line over %d bytes" % self.cap)
        if piece:
            self._parts.append(piece)


class Lines:
    """Bytes in, whole lines out; a line over `cap` bytes keeps its first `cap` (the rest is
    dropped up to its newline and counted in `cut`)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.cut = 0
        self._parts: List[bytes] = []
        self._size = 0
        self._skipping = False

    def feed(self, chunk: bytes) -> List[bytes]:
        lines = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                break
            self._add(chunk[start:end])
            lines.append(b"".join(self._parts))
            self._parts, self._size, self._skipping = [], 0, False
            start = end + 1
        self._add(chunk[start:])
        return lines

    def end(self) -> List[bytes]:
        rest = b"".join(self._parts)
        self._parts, self._size = [], 0
        return [rest] if rest else []

    def _add(self, piece: bytes) -> None:
        if self._skipping or not piece:
            return
        room = self.cap - self._size
        if len(piece) > room:
            piece, self._skipping = piece[:room], True
            self.cut += 1
        self._parts.append(piece)
        self._size += len(piece)


def run(
    argv: List[str],
    cap: int,
    timeout: float,
    preexec: Optional[Callable[[], None]] = None,
    **popen: Any,
) -> Tuple[int, bytes, bytes]:
    """subprocess.run(capture_output=True) for a short child, keeping at most `cap` bytes of its
    stdout and of its stderr: past that, or past `timeout`, its process group is killed and
    CapExceeded (or subprocess.TimeoutExpired) raised. Returns (status, stdout, stderr)."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=preexec,
        **popen,
    )
    assert proc.stdout is not None and proc.stderr is not None
    kept: List[List[bytes]] = [[], []]
    over: List[str] = []

    def pump(stream: Any, into: List[bytes], name: str) -> None:
        size = 0
        for chunk in iter(lambda: stream.read1(READ_CHUNK), b""):
            size += len(chunk)
            if size > cap:
                over.append(name)
                _kill_group(proc.pid)
                break
            into.append(chunk)
        stream.close()

    threads = [
        threading.Thread(target=pump, args=(proc.stderr, kept[1], "stderr"), daemon=True),
        threading.Thread(target=pump, args=(proc.stdout, kept[0], "stdout"), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        status = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        for thread in threads:
            thread.join()
    if over:
        raise CapExceeded("output", "%s wrote over %d bytes on its %s" % (os.path.basename(argv[0]), cap, over[0]))
    return status, b"".join(kept[0]), b"".join(kept[1])


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
