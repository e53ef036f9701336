"""A started agent process as the link sees it: its stdout as lines, its stdin, a stderr tail.

During start-up the launcher's lines are awaited one at a time (`readline`); once the link owns
the process its lines are pushed to it as they arrive (`listen`), from the transport's own data
callback: a warm call's answer wakes no reader task and goes through no stream buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

import asyncssh

STDERR_KEEP = 8192
LINE_LIMIT = 1 << 24  # a JSON line (one page) is far below this
LineSink = Callable[[bytes], None]
EofSink = Callable[[BaseException | None], None]  # the transport's error, if it failed


class AgentProcess:
    """Lines in, bytes out, exit status: what a transport feeds and the link reads."""

    def __init__(self) -> None:
        self.stderr_tail = b""
        self._partial = b""
        self._lines: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._sink: LineSink | None = None
        self._on_eof: EofSink | None = None

    # -- fed by the transport --------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Bytes of stdout: complete lines go on, the rest waits for its newline."""
        if self._ended:
            return
        if b"\n" not in data:
            self._partial += data
            if len(self._partial) > LINE_LIMIT:
                self.feed_eof(ValueError(f"a line of over {LINE_LIMIT} bytes"))
            return
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            self._deliver(line + b"\n")

    def feed_stderr(self, data: bytes) -> None:
        self.stderr_tail = (self.stderr_tail + data)[-STDERR_KEEP:]

    def feed_eof(self, error: BaseException | None = None) -> None:
        """stdout ended: normally (error None) or because the transport failed."""
        if self._ended:
            return
        if self._partial:
            self._deliver(self._partial)
            self._partial = b""
        self._ended, self._error = True, error
        if self._on_eof is not None:
            self._on_eof(error)
        self._wake()

    def _deliver(self, line: bytes) -> None:
        if self._sink is not None:
            self._sink(line)
        else:
            self._lines.append(line)
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- read by the link ------------------------------------------------------------------------

    async def readline(self) -> bytes:
        """The next line (with its newline); b"" once stdout ended. Before listen() only."""
        while not self._lines:
            if self._ended:
                if self._error is not None:
                    raise self._error
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._lines.popleft()

    def listen(self, sink: LineSink, on_eof: EofSink) -> None:
        """From now on every line goes to `sink` as it arrives, then `on_eof` once."""
        self._sink, self._on_eof = sink, on_eof
        while self._lines:
            sink(self._lines.popleft())
        if self._ended:
            on_eof(self._error)

    def stderr_text(self) -> str:
        return self.stderr_tail.decode("utf-8", "replace").strip()

    # -- the transport's side --------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        raise NotImplementedError

    def write_nowait(self, data: bytes) -> None:
        """Write without waiting for room (a worker forwarding the front's lines: they are small)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close stdin: the agent sees EOF, stops its children and exits."""
        raise NotImplementedError

    async def finish(self, timeout: float = 5.0) -> int | None:
        """Wait for exit (stdout and stderr drained) and return the exit status."""
        raise NotImplementedError


class SshProcess(AgentProcess):
    """An agent on an SSH session channel, fed by the channel's data callbacks."""

    def __init__(self) -> None:
        super().__init__()
        self.chan: asyncssh.SSHClientChannel[bytes] | None = None
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unpaused: asyncio.Future[None] | None = None

    def session(self) -> asyncssh.SSHClientSession[bytes]:
        return _Session(self)

    async def write(self, data: bytes) -> None:
        assert self.chan is not None
        self.chan.write(data)  # BrokenPipeError once the channel is closing, as a stream's write
        if self._unpaused is not None:
            await asyncio.shield(self._unpaused)

    def write_nowait(self, data: bytes) -> None:
        assert self.chan is not None
        with contextlib.suppress(BrokenPipeError):  # a closing channel: its end is reported anyway
            self.chan.write(data)

    def close(self) -> None:
        if self.chan is not None:
            self.chan.close()

    async def finish(self, timeout: float = 5.0) -> int | None:
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), timeout)
        except (TimeoutError, OSError, asyncssh.Error):
            return None
        return self.chan.get_exit_status() if self.chan is not None else None

    def paused(self, paused: bool) -> None:
        if paused and self._unpaused is None:
            self._unpaused = asyncio.get_running_loop().create_future()
        elif not paused and self._unpaused is not None:
            self._unpaused.set_result(None)
            self._unpaused = None

    def lost(self, error: BaseException | None) -> None:
        self.feed_eof(error)
        self.paused(False)
        if not self._closed.done():
            self._closed.set_result(None)


class _Session(asyncssh.SSHClientSession[bytes]):
    def __init__(self, process: SshProcess) -> None:
        self.process = process

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if datatype == asyncssh.EXTENDED_DATA_STDERR:
            self.process.feed_stderr(data)
        else:
            self.process.feed(data)

    def eof_received(self) -> bool:
        self.process.feed_eof()
        return True  # half open, as asyncssh's own process does: the exit status is still to come

    def connection_lost(self, exc: Exception | None) -> None:
        self.process.lost(exc)

    def pause_writing(self) -> None:
        self.process.paused(True)

    def resume_writing(self) -> None:
        self.process.paused(False)


class LocalProcess(AgentProcess):
    """An agent that is a subprocess of the controller (the local host): its pipes pumped."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        super().__init__()
        assert proc.stdin and proc.stdout and proc.stderr
        self.proc = proc
        self._pumps = [
            asyncio.ensure_future(self._pump(proc.stdout, self.feed, eof=True)),
            asyncio.ensure_future(self._pump(proc.stderr, self.feed_stderr)),
        ]

    async def _pump(self, stream: asyncio.StreamReader, into: Callable[[bytes], None], eof: bool = False) -> None:
        error: BaseException | None = None
        try:
            while chunk := await stream.read(1 << 16):
                into(chunk)
        except Exception as exc:  # a pipe that failed ends stdout like any other end
            error = exc
        if eof:
            self.feed_eof(error)

    async def write(self, data: bytes) -> None:
        stdin: Any = self.proc.stdin
        stdin.write(data)
        await stdin.drain()

    def write_nowait(self, data: bytes) -> None:
        stdin: Any = self.proc.stdin
        if not stdin.is_closing():
            stdin.write(data)

    def close(self) -> None:
        stdin: Any = self.proc.stdin
        if not stdin.is_closing():
            stdin.close()

    async def finish(self, timeout: float = 5.0) -> int | None:
        try:
            status = await asyncio.wait_for(self.proc.wait(), timeout)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*self._pumps), 1.0)
        except (TimeoutError, OSError):
            return None
        return status
