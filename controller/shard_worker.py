"""A worker process of the controller: the SSH side of one shard of the links (controller/shards.py).

It connects, starts (and pushes) agents exactly as the controller does in-process
(provision.open_link, each stage told to the front as it is reached), then forwards each agent's
lines both ways without parsing them, and says when an agent's stdout ends and how. Its stdin
and stdout are the wire (controller/shard_wire.py); EOF on stdin ends it, and the links it holds
drop as a killed controller's would: their agents keep their jobs for the lease.

    python -m crashfleet.controller.shard_worker     (started by the front, never by hand)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
from typing import Any

from . import bundle, loop, provision, stages
from .identity import Identity
from .process import AgentProcess
from .settings import Settings
from .shard_wire import CONTROL, TO_AGENT, control_frame, data_frame, error_to_wire, host_from_wire
from .transport import Transport

log = logging.getLogger(__name__)


class Pipe:
    """One agent this worker started: its process and its transport, under the front's link id."""

    def __init__(self, link_id: bytes, process: AgentProcess, transport: Transport) -> None:
        self.link_id, self.process, self.transport = link_id, process, transport


class _Told(stages.Stage):
    """A Stage whose marks go to the front, where the host's deadline is kept."""

    def __init__(self, worker: Worker, request: int) -> None:
        super().__init__()
        self.worker, self.request = worker, request

    def mark(self, name: str) -> None:
        super().mark(name)
        self.worker.control({"op": "stage", "id": self.request, "name": name})


class Worker(asyncio.Protocol):
    def __init__(self, out: asyncio.WriteTransport, done: asyncio.Future[None]) -> None:
        self.out, self.done = out, done
        self.settings: Settings | None = None
        self.identity: Identity | None = None
        self.pipes: dict[bytes, Pipe] = {}
        self.opening: dict[int, asyncio.Task[None]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._partial = b""
        self._queued: list[bytes] = []

    # -- the wire ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        *frames, self._partial = (self._partial + data).split(b"\n")
        for frame in frames:
            if not frame:
                continue
            if frame[0] == TO_AGENT:
                link_id, _, line = frame[1:].partition(b"\0")
                pipe = self.pipes.get(link_id)
                if pipe is not None:
                    pipe.process.write_nowait(line + b"\n")
            elif frame[0] == CONTROL:
                self.handle(json.loads(frame))

    def eof_received(self) -> bool | None:
        self.spawn(self.shutdown())
        return None

    def send(self, frame: bytes) -> None:
        """Frames go out together once per loop turn: one write for a whole fan-out's answers."""
        if not self._queued:
            asyncio.get_running_loop().call_soon(self._flush)
        self._queued.append(frame)

    def _flush(self) -> None:
        frames, self._queued = self._queued, []
        if not self.out.is_closing():
            self.out.write(b"".join(frames))

    def control(self, message: dict[str, Any]) -> None:
        self.send(control_frame(message))

    def spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- what the front asks -------------------------------------------------------------------

    def handle(self, message: dict[str, Any]) -> None:
        op = message["op"]
        if op == "init":
            self.settings = Settings(**message["settings"])
            self.identity = Identity(message["identity"]["key"], message["identity"]["slot"])
            data = base64.b64decode(message["bundle"]["data"])
            bundle.adopt(bundle.Bundle(data, message["bundle"]["build"], message["bundle"]["sha256"]))
            self.control({"op": "ready", "pid": os.getpid()})
        elif op == "open":
            request: int = message["id"]
            task = asyncio.ensure_future(self.open(request, message["host"]))
            self.opening[request] = task
            task.add_done_callback(lambda _: self.opening.pop(request, None))
        elif op == "cancel" and message["id"] in self.opening:
            self.opening[message["id"]].cancel()
        elif op == "close":
            self.spawn(self.close(str(message["id"]).encode()))

    async def open(self, request: int, host_data: dict[str, Any]) -> None:
        assert self.settings is not None and self.identity is not None
        stages.begin(_Told(self, request))
        try:
            link = await provision.open_link(host_from_wire(host_data), self.settings, self.identity)
        except asyncio.CancelledError:
            return  # the front gave up on it (its deadline): nothing to answer
        except BaseException as exc:  # every failure goes to the front, which raises it there
            self.control({"op": "failed", "id": request, "error": error_to_wire(exc)})
            return
        pipe = Pipe(str(request).encode(), link.process, link.transport)
        self.pipes[pipe.link_id] = pipe
        self.control({"op": "opened", "id": request, "hello": link.hello})

        def forward(line: bytes) -> None:
            self.send(data_frame(b"<", pipe.link_id, line))

        def over(error: BaseException | None) -> None:
            self.spawn(self.ended(pipe, error))

        link.process.listen(forward, over)

    async def ended(self, pipe: Pipe, error: BaseException | None) -> None:
        """The agent's stdout ended: its exit status and stderr, and whether the connection went."""
        status = await pipe.process.finish(timeout=2.0)
        self.control(
            {
                "op": "ended",
                "id": int(pipe.link_id),
                "error": [type(error).__name__, str(error)] if error is not None else None,
                "dropped": pipe.transport.dropped(),
                "status": status,
                "stderr": pipe.process.stderr_text()[-2000:],
            }
        )

    async def close(self, link_id: bytes) -> None:
        pipe = self.pipes.pop(link_id, None)
        if pipe is not None:
            pipe.process.close()
            await pipe.process.finish()
            await pipe.transport.close()
        self.control({"op": "closed", "id": int(link_id)})

    async def shutdown(self) -> None:
        """The front is gone (or done): drop every link as a killed controller would."""
        for task in list(self.opening.values()):
            task.cancel()
        pipes, self.pipes = list(self.pipes.values()), {}
        for pipe in pipes:
            pipe.process.close()
        await asyncio.gather(*(pipe.transport.close() for pipe in pipes), return_exceptions=True)
        if not self.done.done():
            self.done.set_result(None)


async def main() -> None:
    running = asyncio.get_running_loop()
    out, _ = await running.connect_write_pipe(asyncio.Protocol, os.fdopen(1, "wb", buffering=0))
    done: asyncio.Future[None] = running.create_future()
    await running.connect_read_pipe(lambda: Worker(out, done), os.fdopen(0, "rb", buffering=0))
    await done
    with contextlib.suppress(Exception):
        out.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="crashfleet worker %(process)d: %(message)s")
    loop.run(main())
