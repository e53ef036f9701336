"""One long-lived agent per host; JSON-RPC calls multiplexed over its stdin/stdout."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable
from typing import Any, cast

from crashfleet.agent import protocol

from .errors import AgentCallError, LinkClosed, agent_error
from .process import AgentProcess
from .progress import JobWatcher
from .transport import Transport

log = logging.getLogger(__name__)
LostHandler = Callable[[str], None]


class AgentLink:
    """Calls into one agent; notifications go to listeners; EOF fails every pending call."""

    def __init__(self, host: str, process: AgentProcess, transport: Transport) -> None:
        self.host = host
        self.process = process
        self.transport = transport
        self.hello: protocol.Hello = {}
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._started: dict[int, str] = {}  # request id -> the job it started (agent's job.started)
        self._watchers: dict[int, JobWatcher] = {}  # request id -> told its job's progress
        self._closed: LinkClosed | None = None
        self._stopping = False  # the agent said it is exiting: new calls go to a fresh agent
        self.on_lost: LostHandler | None = None  # told when the connection (not just the agent) drops
        self._dropped = False  # the connection dropped: the agent lives on, its jobs under their lease
        self._ending: asyncio.Task[None] | None = None
        process.listen(self._dispatch, self._stdout_ended)

    @property
    def alive(self) -> bool:
        return self._closed is None and not self._stopping

    @property
    def facts(self) -> protocol.Facts:
        return self.hello.get("facts", {})

    async def call(
        self, method: str, params: dict[str, Any] | None = None, on_progress: JobWatcher | None = None
    ) -> Any:
        """One call; `on_progress` hears the progress of a job the call starts while it waits."""
        if self._closed is not None:
            raise self._closed
        req_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = future
        if on_progress is not None:
            self._watchers[req_id] = on_progress
        line = json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params or {}})
        try:
            await self.process.write(line.encode() + b"\n")
            return await future
        except (OSError, BrokenPipeError, ConnectionError) as exc:
            raise await self._fail(f"write failed: {exc}") from None
        except LinkClosed as exc:
            job = self._started.get(req_id)
            if job is None or not self._dropped:  # an agent that ended took its jobs with it
                raise
            raise LinkClosed(
                f"{exc.message}; the job {job} this call started goes on there for its job lease",
                exc.hint,
                kind=exc.kind,
                stderr_tail=exc.stderr_tail,
                exit_status=exc.exit_status,
                started_job=job,
            ) from None
        finally:
            self._pending.pop(req_id, None)
            self._started.pop(req_id, None)
            self._watchers.pop(req_id, None)

    async def close(self, keep_jobs: bool = False) -> None:
        """Close stdin, then the transport. A controller that closes its links on purpose ends
        their jobs too ("shutdown" first); with keep_jobs (a link given up as dead), the agent
        keeps them for its job lease, for a later link to reattach."""
        if not keep_jobs and self.alive:
            try:
                await asyncio.wait_for(self.process.write(_SHUTDOWN), 2.0)
            except (TimeoutError, OSError, ConnectionError):
                pass  # gone already: its lease ends what it ran
        self.process.close()
        await self.process.finish()
        await self.transport.close()
        if self._closed is None:
            self._closed = LinkClosed(f"agent link to {self.host} closed", kind="closed")

    def _stdout_ended(self, error: BaseException | None) -> None:
        """The agent's stdout ended: it exited, or the transport failed (`error`)."""
        self._ending = asyncio.ensure_future(self._end(error))

    async def _end(self, error: BaseException | None) -> None:
        # Judged a loop turn later, once a connection that is going down says so (is_closed).
        if error is not None:  # any transport failure ends the link the same way
            reason = f"the connection dropped ({type(error).__name__}: {error})"
        else:
            reason = "the connection dropped" if self.transport.dropped() else "the agent ended"
        self._dropped = reason.startswith("the connection dropped") and not self._stopping
        await self._fail(reason)
        if self._dropped and self.on_lost is not None:
            self.on_lost(reason)  # the host, not only its agent, may be unreachable now

    def _dispatch(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            log.warning("%s: agent sent a non-JSON line: %r", self.host, line[:200])
            return
        if "id" in message and ("result" in message or "error" in message):
            future = self._pending.get(message["id"])
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(_call_error(message["error"]))
                else:
                    future.set_result(message["result"])
        elif message.get("method") == protocol.AGENT_STOPPING:
            self._stopping = True
        elif message.get("method") == protocol.JOB_STARTED:
            params = cast(protocol.JobStarted, message.get("params") or {})
            if params.get("request") in self._pending:
                self._started[params["request"]] = str(params.get("job_id"))
        elif message.get("method") == protocol.JOB_PROGRESS:
            self._job_progress(message.get("params") or {})

    def _job_progress(self, params: dict[str, Any]) -> None:
        for req_id, job_id in self._started.items():
            watcher = self._watchers.get(req_id)
            if job_id == str(params.get("job_id")) and watcher is not None:
                watcher(params)

    async def _fail(self, reason: str) -> LinkClosed:
        if self._closed is None:
            status = await self.process.finish(timeout=2.0)
            tail = self.process.stderr_text()[-2000:] or None
            self._closed = LinkClosed(
                f"agent on {self.host} stopped: {reason}" + (f" (exit status {status})" if status is not None else ""),
                "see stderr_tail; the next call reconnects",
                kind="agent_died",
                stderr_tail=tail,
                exit_status=status,
            )
        for future in self._pending.values():
            if not future.done():
                future.set_exception(self._closed)
        return self._closed


_SHUTDOWN = json.dumps({"jsonrpc": "2.0", "method": protocol.SHUTDOWN, "params": {}}).encode() + b"\n"


def _call_error(error: dict[str, Any]) -> AgentCallError:
    data = error.get("data") or {}
    return agent_error(
        str(error.get("message", "agent error")), data.get("hint"), str(data.get("kind", "agent_error")), data
    )
