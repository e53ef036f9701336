"""Every core of the controller: the hosts' links split across worker processes.

A warm call is mostly SSH work (asyncssh's packets, in Python), and one process is one core. So
the front (this process: the MCP server, the tools, the fleet's down hosts, deadlines, jobs and
audit) keeps every link as an AgentLink, but the SSH side of a link lives in a worker process
(controller/shard_worker.py): one per shard of the hosts, each with its own event loop and SSH
connections. A link's process is a ShardProcess here: its lines go to and come from its worker
over a pipe (controller/shard_wire.py), batched per loop turn, never re-encoded. Tools, jobs,
leases and reattach see the same links as in-process.

A worker that dies takes only its shard's links: they end as dropped connections do, so their
hosts are down ("reconnecting in the background", as always), and the next connect starts a new
worker; the agents kept their jobs for the lease and the same identity reattaches to them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import sys
import zlib
from typing import Any

from crashfleet.inventory import Host

from . import stages
from .bundle import agent_bundle
from .errors import ConnectLost
from .identity import Identity
from .link import AgentLink
from .process import AgentProcess
from .settings import Settings
from .shard_wire import CONTROL, FROM_AGENT, control_frame, data_frame, error_from_wire, host_to_wire, remote_exception

SHARD_FROM = 1000  # hosts in the inventory from which `workers` unset means one per core (bench/README.md)
STOP_WAIT = 10.0  # seconds a worker has to drop its links and exit before it is killed
HIGH_WATER = 1 << 20  # bytes queued to a worker before writers wait


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(workers: int | None, hosts: int) -> int:
    """Worker processes for a fleet of `hosts`: the setting, else one per core for a large fleet
    (below SHARD_FROM hosts one process has the time, and a worker costs a Python process)."""
    if workers is not None:
        return workers
    return cores() if hosts >= SHARD_FROM and cores() > 1 else 0


class Shards:
    """The worker processes, one per shard; a host's shard is fixed by its name."""

    def __init__(self, settings: Settings, identity: Identity, count: int) -> None:
        self.shards = [Shard(index, settings, identity) for index in range(count)]

    def of(self, name: str) -> Shard:
        return self.shards[zlib.crc32(name.encode()) % len(self.shards)]

    async def open_link(self, host: Host) -> AgentLink:
        """What provision.open_link is in-process, done by the host's worker."""
        worker = await self.of(host.name).worker()
        return await worker.open(host)

    def pids(self) -> list[int | None]:
        """Each shard's worker process id (None: not running now)."""
        return [
            shard.current.pid if shard.current is not None and shard.current.alive else None for shard in self.shards
        ]

    async def close(self) -> None:
        await asyncio.gather(*(shard.stop() for shard in self.shards))


class Shard:
    """One shard: its worker process, started when first needed and again after it died."""

    def __init__(self, index: int, settings: Settings, identity: Identity) -> None:
        self.index, self.settings, self.identity = index, settings, identity
        self.current: WorkerProcess | None = None
        self._starting = asyncio.Lock()

    async def worker(self) -> WorkerProcess:
        async with self._starting:
            if self.current is None or not self.current.alive:
                self.current = await WorkerProcess.start(self.index, self.settings, self.identity)
            return self.current

    async def stop(self) -> None:
        if self.current is not None:
            await self.current.stop()


class WorkerProcess(asyncio.SubprocessProtocol):
    """One running worker: the wire to it, the links it opened, and what happens when it dies."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.pid: int | None = None
        self.alive = True
        self.transport: asyncio.SubprocessTransport | None = None
        self._stdin: asyncio.WriteTransport | None = None
        self._ids = itertools.count(1)
        self._opening: dict[int, tuple[asyncio.Future[None], stages.Stage | None]] = {}
        self._opened: dict[int, tuple[dict[str, Any], ShardProcess]] = {}
        self.procs: dict[bytes, ShardProcess] = {}
        self._closing: dict[bytes, asyncio.Future[None]] = {}
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room: asyncio.Future[None] | None = None
        self._partial = b""
        self._queued: list[bytes] = []

    @classmethod
    async def start(cls, index: int, settings: Settings, identity: Identity) -> WorkerProcess:
        worker = cls(index)
        argv = [
            sys.executable,
            *(f"-W{option}" for option in sys.warnoptions),
            "-m",
            "crashfleet.controller.shard_worker",
        ]
        await asyncio.get_running_loop().subprocess_exec(
            lambda: worker, *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None
        )
        built = agent_bundle()
        worker.control(
            {
                "op": "init",
                "settings": settings.model_dump(mode="json", exclude={"http_token"}),
                "identity": {"key": identity.key, "slot": identity.slot},
                "bundle": {"data": base64.b64encode(built.data).decode(), "build": built.build, "sha256": built.sha256},
            }
        )
        await worker._ready
        return worker

    # -- the wire ------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        assert self.transport is not None
        self.pid = self.transport.get_pid()
        self._stdin = self.transport.get_pipe_transport(0)  # type: ignore[assignment]

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        *frames, self._partial = (self._partial + data).split(b"\n")
        for frame in frames:
            if not frame:
                continue
            if frame[0] == FROM_AGENT:
                link_id, _, line = frame[1:].partition(b"\0")
                process = self.procs.get(link_id)
                if process is not None:
                    process.line(line)
            elif frame[0] == CONTROL:
                self._handle(json.loads(frame))

    def send(self, frame: bytes) -> None:
        """Frames go out together once per loop turn: one write for a whole fan-out's calls."""
        if not self.alive:
            return  # its links have ended (or are ending): nothing waits for an answer
        if not self._queued:
            asyncio.get_running_loop().call_soon(self._flush)
        self._queued.append(frame)

    def _flush(self) -> None:
        frames, self._queued = self._queued, []
        if self._stdin is not None and not self._stdin.is_closing():
            self._stdin.write(b"".join(frames))

    def control(self, message: dict[str, Any]) -> None:
        self.send(control_frame(message))

    async def room(self) -> None:
        """Wait while the worker is behind on what it was sent (it has HIGH_WATER queued)."""
        if self._stdin is not None and self._stdin.get_write_buffer_size() > HIGH_WATER:
            if self._room is None:
                self._room = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._room)

    def pause_writing(self) -> None:
        pass  # room() looks at the buffer itself

    def resume_writing(self) -> None:
        if self._room is not None:
            self._room.set_result(None)
            self._room = None

    def connection_lost(self, exc: Exception | None) -> None:
        """The worker exited (all its pipes closed): its links end as dropped connections."""
        self.alive = False
        status = self.transport.get_returncode() if self.transport is not None else None
        message = f"the controller's worker process {self.pid} exited (status {status})"
        if not self._ready.done():
            self._ready.set_exception(ConnectLost(message, "see the controller's log", kind="connect_lost"))
        for future, _ in self._opening.values():
            if not future.done():  # worth another try within the deadline: the next one starts a new worker
                future.set_exception(ConnectLost(message, "it is started again", kind="connect_lost"))
        for process in list(self.procs.values()):
            process.ended(remote_exception("WorkerExited", message), dropped=True, status=None, stderr="")
        for future in self._closing.values():
            if not future.done():
                future.set_result(None)
        self.resume_writing()
        if not self._gone.done():
            self._gone.set_result(None)

    # -- what the worker says ------------------------------------------------------------------

    def _handle(self, message: dict[str, Any]) -> None:
        op, request = message["op"], message.get("id")
        if op == "ready":
            self._ready.set_result(None)
        elif op == "stage" and request in self._opening:
            stage = self._opening[request][1]
            if stage is not None:
                stage.mark(message["name"])
        elif op == "opened":
            process = ShardProcess(self, str(request).encode())
            self.procs[process.link_id] = process  # its lines may follow in this very read
            if request in self._opening:
                self._opened[request] = (message["hello"], process)
                self._opening[request][0].set_result(None)
            else:
                self.close(process.link_id)  # the caller gave up meanwhile
        elif op == "failed" and request in self._opening:
            self._opening[request][0].set_exception(error_from_wire(message["error"]))
        elif op == "ended":
            ending = self.procs.get(str(request).encode())
            if ending is not None:
                error = remote_exception(*message["error"]) if message["error"] else None
                ending.ended(error, message["dropped"], message["status"], message["stderr"])
        elif op == "closed":
            link_id = str(request).encode()
            self.procs.pop(link_id, None)
            future = self._closing.pop(link_id, None)
            if future is not None and not future.done():
                future.set_result(None)

    # -- what the front asks -------------------------------------------------------------------

    async def open(self, host: Host) -> AgentLink:
        request = next(self._ids)
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._opening[request] = (opened, stages.current())
        self.control({"op": "open", "id": request, "host": host_to_wire(host)})
        try:
            await opened
        except asyncio.CancelledError:
            self.control({"op": "cancel", "id": request})
            raise
        finally:
            self._opening.pop(request, None)
        hello, process = self._opened.pop(request)
        link = AgentLink(host.name, process, ShardTransport(self, process))
        link.hello = hello  # type: ignore[assignment]
        return link

    def close(self, link_id: bytes) -> asyncio.Future[None]:
        """Ask the worker to close a link's channel and connection; done once it did."""
        future = self._closing.get(link_id)
        if future is None:
            future = self._closing[link_id] = asyncio.get_running_loop().create_future()
            if self.alive:
                self.control({"op": "close", "id": int(link_id)})
            else:
                future.set_result(None)
        return future

    async def stop(self) -> None:
        """EOF to the worker: it drops what it holds and exits (killed if it does not)."""
        if not self.alive or self.transport is None:
            return
        if self._stdin is not None:
            self._flush()
            self._stdin.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._gone), STOP_WAIT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.transport.kill()
            await self._gone


class ShardProcess(AgentProcess):
    """A link's agent process as the front sees it: its lines through its worker."""

    def __init__(self, worker: WorkerProcess, link_id: bytes) -> None:
        super().__init__()
        self.worker, self.link_id = worker, link_id
        self.dropped = False
        self.status: int | None = None
        self._over: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def line(self, line: bytes) -> None:
        if not self._ended:
            self._deliver(line)

    def ended(self, error: BaseException | None, dropped: bool, status: int | None, stderr: str) -> None:
        self.dropped, self.status, self.stderr_tail = dropped, status, stderr.encode()
        self.feed_eof(error)
        if not self._over.done():
            self._over.set_result(None)

    async def write(self, data: bytes) -> None:
        if self._ended:
            raise BrokenPipeError(f"the agent's link ended (worker process {self.worker.pid})")
        self.worker.send(data_frame(b">", self.link_id, data))
        await self.worker.room()

    def write_nowait(self, data: bytes) -> None:
        self.worker.send(data_frame(b">", self.link_id, data))

    def close(self) -> None:
        self.worker.close(self.link_id)

    async def finish(self, timeout: float = 5.0) -> int | None:
        try:
            await asyncio.wait_for(asyncio.shield(self._over), timeout)
        except TimeoutError:
            return None
        return self.status


class ShardTransport:
    """A link's transport as the front sees it: the worker holds the SSH connection."""

    def __init__(self, worker: WorkerProcess, process: ShardProcess) -> None:
        self.worker, self.process = worker, process

    async def start(self, argv: list[str]) -> AgentProcess:
        raise NotImplementedError("a worker starts its links' agents")

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.worker.close(self.process.link_id)), STOP_WAIT)

    def dropped(self) -> bool:
        return self.process.dropped
