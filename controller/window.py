"""An adaptive limit on connection set-ups in flight: it shrinks when handshakes slow down.

On a loaded controller (or a loaded jump host) a hundred handshakes at once each get a
hundredth of the CPU and all finish late; a few at a time finish early and keep the queue
moving. Additive increase while set-ups stay fast, multiplicative decrease when one takes
much longer than the fastest seen, or fails: TCP's answer to the same problem.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

SLOW_FACTOR = 4.0  # a set-up this many times the fastest one is "slow"
SLOW_FLOOR = 1.0  # ... and only if it took at least this many seconds
DECREASE = 0.7


class AdaptiveWindow:
    def __init__(self, maximum: int, minimum: int = 4, start: int = 16) -> None:
        self.maximum = max(1, maximum)
        self.minimum = min(minimum, self.maximum)
        self.limit = float(min(max(start, self.minimum), self.maximum))
        self.fastest: float | None = None
        self._active = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one set-up slot; the time it was held is what adapts the limit."""
        async with self._changed:
            await self._changed.wait_for(lambda: self._active < int(self.limit))
            self._active += 1
        started, ok = time.monotonic(), True
        try:
            yield
        except (asyncio.CancelledError, TimeoutError, ConnectionError):
            ok = False  # a sign of load; a refused key or a wrong password is not
            raise
        finally:
            self._record(time.monotonic() - started, ok)
            async with self._changed:
                self._active -= 1
                self._changed.notify_all()

    def _record(self, seconds: float, ok: bool) -> None:
        if ok:
            self.fastest = seconds if self.fastest is None else min(self.fastest, seconds)
        slow = not ok or (seconds >= SLOW_FLOOR and seconds > SLOW_FACTOR * (self.fastest or seconds))
        if slow:
            self.limit = max(float(self.minimum), self.limit * DECREASE)
        else:
            self.limit = min(float(self.maximum), self.limit + 1.0)
