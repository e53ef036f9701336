"""Wait until many sshd listeners answer with an SSH banner, all in parallel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

RETRY_DELAY = 0.02  # between refused connects: a fresh sshd binds within milliseconds
BANNER_TIMEOUT = 2.0  # per attempt; the per-connection child re-execs sshd before answering


@dataclass
class Target:
    """One listener to probe; exited() reports the sshd's death so we fail fast."""

    name: str
    address: str
    port: int
    exited: Callable[[], str | None]


async def _banner(address: str, port: int) -> bytes:
    """Connect and read the server's identification line."""
    reader, writer = await asyncio.open_connection(address, port)
    try:
        return await asyncio.wait_for(reader.readline(), BANNER_TIMEOUT)
    finally:
        writer.close()


async def _probe(target: Target, deadline: float) -> str | None:
    """Retry until the banner starts with SSH-2.0; return the failure reason or None."""
    last = "never answered"
    while time.monotonic() < deadline:
        dead = target.exited()
        if dead is not None:
            return dead
        try:
            line = await _banner(target.address, target.port)
        except (TimeoutError, OSError) as exc:
            last = f"{type(exc).__name__}: {exc}".rstrip(": ")
        else:
            if line.startswith(b"SSH-2.0"):
                return None
            last = f"unexpected banner {line[:60]!r}"
        await asyncio.sleep(RETRY_DELAY)
    return f"not ready ({last})"


async def _probe_all(targets: Sequence[Target], timeout: float) -> dict[str, str]:
    """Probe every target concurrently under one overall deadline."""
    deadline = time.monotonic() + timeout
    results = await asyncio.gather(*(_probe(t, deadline) for t in targets))
    return {t.name: r for t, r in zip(targets, results) if r is not None}


def wait_ready(targets: Sequence[Target], timeout: float) -> dict[str, str]:
    """Return {name: reason} for targets that did not show a banner within timeout."""
    if not targets:
        return {}
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_probe_all(targets, timeout))
    # Called from async code (e.g. an async pytest fixture): use a private loop in a thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _probe_all(targets, timeout)).result()
