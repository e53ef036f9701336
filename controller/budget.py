"""Every tool call answers within the client's patience: Claude Desktop gives up on a call after
about 60 s, and an answer it never sees is lost, however right.

The MCP face gives each call a deadline (CRASHFLEET_CALL_BUDGET, 40 s). A fan-out still running
then answers with the hosts done so far, the others "still working", and the rest goes on as a
job whose complete answer, the same shape, job_status returns (answers_later). One long operation
(a dump opening, a script) answers with that job at once. Calls from a terminal have no deadline:
a person at a terminal waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from .grouping import HostOutcome
from .models import FanoutResult, Group, Summary

T = TypeVar("T")
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("crashfleet_call_deadline", default=None)
_sooner: contextvars.ContextVar[float | None] = contextvars.ContextVar("crashfleet_call_sooner", default=None)


@contextlib.contextmanager
def limit(seconds: float) -> Iterator[None]:
    """The current call must answer within `seconds` (the MCP face sets it around each tool call),
    or sooner when the caller asked for that (a client that takes a task handle instead)."""
    sooner = _sooner.get()
    token = _deadline.set(asyncio.get_running_loop().time() + min(seconds, sooner if sooner is not None else seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


@contextlib.contextmanager
def sooner(seconds: float) -> Iterator[None]:
    """Calls limited inside this block answer within `seconds` at most: what is not done by then
    goes on as a job (an MCP task answers with that job instead of waiting the whole budget)."""
    token = _sooner.set(seconds)
    try:
        yield
    finally:
        _sooner.reset(token)


def left() -> float | None:
    """Seconds this call has left to answer; None: no limit (a terminal, or a job's own work)."""
    deadline = _deadline.get()
    if deadline is None:
        return None
    return max(0.0, deadline - asyncio.get_running_loop().time())


@contextlib.contextmanager
def unlimited() -> Iterator[None]:
    """Work that goes on as a job after its call answered: it has the time it needs."""
    token = _deadline.set(None)
    try:
        yield
    finally:
        _deadline.reset(token)


def still_working(host: str, job_id: str) -> HostOutcome:
    """A host whose answer comes in the job's complete answer."""
    return HostOutcome(
        host,
        "running",
        key="still working",
        message=f"still working when the call had to answer: job_status('{job_id}') has its answer",
    )


def one_host_answer(host: str, data: dict[str, object]) -> FanoutResult:
    """A single operation's answer in the fan-out shape job_status returns: one host, its data."""
    return FanoutResult(summary=Summary(total=1, ok=1), groups=[Group(hosts=host, count=1, status="ok", data=data)])


async def run_within(work: Awaitable[T]) -> tuple[asyncio.Task[T], bool]:
    """Start `work`; (its task, whether it ended) once it ended or the call's time is up. Past the
    deadline the task goes on (with no deadline of its own): the caller makes it a job."""
    with unlimited():
        task = asyncio.ensure_future(work)
    try:
        await asyncio.wait({task}, timeout=left())
    except asyncio.CancelledError:
        task.cancel()  # the client cancelled the call: the work ends with it,
        await asyncio.wait({task})  # its own clean-up first (a crash command interrupted: the session free)
        raise
    return task, task.done()


@dataclass
class Rest:
    """The hosts of a fan-out still working when its call had to answer; their work goes on."""

    tasks: dict[str, asyncio.Task[HostOutcome]]
    started: float  # time.monotonic() when the fan-out began

    @property
    def hosts(self) -> list[str]:
        return list(self.tasks)

    def finished(self) -> list[HostOutcome]:
        return [task.result() for task in self.tasks.values() if task.done() and not task.cancelled()]

    async def outcomes(self) -> list[HostOutcome]:
        return list(await asyncio.gather(*self.tasks.values()))

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

    def cancel(self) -> None:
        for task in self.tasks.values():
            task.cancel()


# (outcomes, elapsed ms, final) -> the tool's answer; final: every host answered (a partial answer
# must not start what only the complete one may, such as a job for the hosts still running)
Assemble = Callable[[list[HostOutcome], int, bool], FanoutResult]
