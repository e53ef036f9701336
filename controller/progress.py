"""MCP progress for a fan-out: hosts finishing, and the agents' job progress while they work.

A host finishing moves the count to the next whole number. The agents' `job.progress`
notifications (sent while a job writes output) move it by ever smaller steps in between, so
the value always increases, as MCP requires, and never reaches the next host's count.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from typing import Any

Progress = Callable[[float, int, str], Awaitable[None]]
JobWatcher = Callable[[dict[str, Any]], None]  # called with an agent's job.progress params
EVERY = 1.0  # seconds between two job-progress reports of one fan-out (hundreds of hosts send them)

# Set for each host of a fan-out; Fleet.call hands it to the link for the job its call starts.
watching: contextvars.ContextVar[JobWatcher | None] = contextvars.ContextVar("watching", default=None)


class FanoutProgress:
    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.total = total
        self.done = 0
        self.value = 0.0
        self._last = 0.0
        self._lock = asyncio.Lock()  # reports go out in the order their values were taken
        self._pending: set[asyncio.Task[None]] = set()
        self.closed = False

    def close(self) -> None:
        """The call answered (hosts may still be working, as a job): no more reports on its token."""
        self.closed = True

    async def host_done(self, host: str, status: str) -> None:
        self.done += 1
        await self._report(float(self.done), f"{host}: {status}")

    def watcher(self, host: str) -> JobWatcher:
        return lambda params: self.step(lambda: _describe(host, params))

    async def ticking(self, expected: float) -> None:
        """A step every second until cancelled: work whose hosts all finish together (tracing for a
        fixed time) still shows it is alive."""
        started = time.monotonic()
        while True:
            await asyncio.sleep(EVERY)
            self.step(lambda: f"tracing, {time.monotonic() - started:.0f} s of {expected:.0f}")

    def step(self, message: Callable[[], str]) -> None:
        """Half of what is left before the next host's count, at most every EVERY seconds (the
        message is made only then: hundreds of hosts notify twice a second)."""
        now = time.monotonic()
        if now - self._last < EVERY:
            return
        self._last = now
        step = (self.done + 1 - self.value) / 2
        task = asyncio.ensure_future(self._report(self.value + step, message()))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _report(self, value: float, message: str) -> None:
        async with self._lock:
            if self.closed or value <= self.value:
                return  # overtaken by a host that finished meanwhile
            self.value = value
            await self.progress(value, self.total, message)


def _describe(host: str, params: dict[str, Any]) -> str:
    """What the agent said of its job; a field of the wrong type is left out, never raised on."""
    written, elapsed = params.get("bytes"), params.get("elapsed")
    size = f", {written / 1024:.0f} KB so far" if isinstance(written, int) else ""
    running = f" {elapsed:.0f} s" if isinstance(elapsed, (int, float)) else ""
    return f"{host}: running{running}{size}"
