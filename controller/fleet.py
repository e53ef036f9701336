"""The fleet: pattern -> hosts, one agent link per host, fan-out with a window and deadlines."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from crashfleet.inventory import Host, Inventory, InventoryError, PatternError, load_inventory

from .audit import AuditLog
from .errors import CrashfleetError, HostError, UsageError
from .grouping import HostOutcome
from .link import AgentLink
from .provision import open_link
from .settings import Settings

log = logging.getLogger(__name__)
HostOp = Callable[[Host], Awaitable[HostOutcome]]
Progress = Callable[[int, int, str], Awaitable[None]]


class Fleet:
    """Keeps links alive across calls: the second call to a host costs one round trip."""

    def __init__(self, settings: Settings, audit: AuditLog | None = None) -> None:
        self.settings = settings
        self.audit = audit
        self.links: dict[str, AgentLink] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._inventory: Inventory | None = None
        self._inventory_stamp: float | None = None

    def inventory(self) -> Inventory:
        """The inventory, re-read when its file changes (operators edit it live)."""
        path = self.settings.inventory
        stamp = _mtime(path) if path else None
        if self._inventory is None or stamp != self._inventory_stamp:
            try:
                self._inventory = load_inventory(path)
            except InventoryError as exc:
                raise UsageError(str(exc), "fix the inventory file; see `crashfleet hosts`") from None
            self._inventory_stamp = stamp
        return self._inventory

    def match(self, pattern: str) -> list[Host]:
        try:
            return self.inventory().match(pattern)
        except PatternError as exc:
            raise UsageError(str(exc)) from None

    def host(self, name: str) -> Host:
        host = self.inventory().hosts.get(name)
        if host is None:
            raise UsageError(f"no host {name!r} in the inventory", "fleet_hosts lists the hosts")
        return host

    async def link(self, host: Host) -> AgentLink:
        """The host's live link, connecting (and provisioning) on first use or after a drop."""
        lock = self._locks.setdefault(host.name, asyncio.Lock())
        async with lock:
            link = self.links.get(host.name)
            if link is not None and link.alive:
                return link
            if link is not None:
                asyncio.ensure_future(link.close())
            try:
                link = await open_link(host, self.settings)
            except HostError as exc:
                self._audit(host.name, "connect", {"address": host.address}, f"error: {exc.message}", error=exc)
                raise
            self.links[host.name] = link
            self._audit(host.name, "connect", {"address": host.address}, "ok", link.hello.get("build"))
            return link

    async def call(self, host: Host, method: str, params: dict[str, Any] | None = None) -> Any:
        """One agent call, audited. A dead link is reopened before the call, never after:
        re-sending a call the agent may have started would run it twice."""
        params = params or {}
        link = await self.link(host)
        try:
            result = await link.call(method, params)
        except HostError as exc:
            self._audit(host.name, method, params, f"error: {exc.message}", error=exc)
            raise
        self._audit(host.name, method, params, "ok", result)
        return result

    async def fan_out(self, hosts: list[Host], op: HostOp, *, deadline: float | None = None,
                      progress: Progress | None = None) -> tuple[list[HostOutcome], int]:
        """Run op on every host within the window; each host ends with a status, never an exception."""
        started = time.monotonic()
        window = asyncio.Semaphore(self.settings.fanout)
        limit = deadline or self.settings.host_deadline
        done = 0

        async def one(host: Host) -> HostOutcome:
            nonlocal done
            async with window:
                outcome = await _bounded(host, op, limit)
            done += 1
            if progress is not None:
                await progress(done, len(hosts), f"{host.name}: {outcome.status}")
            return outcome

        outcomes = await asyncio.gather(*(one(host) for host in hosts))
        return list(outcomes), int((time.monotonic() - started) * 1000)

    async def close(self) -> None:
        links, self.links = list(self.links.values()), {}
        await asyncio.gather(*(link.close() for link in links), return_exceptions=True)

    def _audit(self, host: str, method: str, params: dict[str, Any], outcome: str, result: Any = None,
               error: HostError | None = None) -> None:
        if self.audit is not None:
            try:
                self.audit.record(host, method, params, outcome, result, error)
            except OSError as exc:
                log.warning("audit log write failed: %s", exc)


async def _bounded(host: Host, op: HostOp, limit: float) -> HostOutcome:
    try:
        return await asyncio.wait_for(op(host), limit)
    except asyncio.TimeoutError:
        return HostOutcome(host.name, "timeout", message=f"{host.name} did not answer within {limit:g} s",
                           hint="the host or its sshd may be hung; raise the timeout or check the host")
    except HostError as exc:
        return HostOutcome(host.name, exc.status, key=exc.kind,  # type: ignore[arg-type]
                           message=exc.message, hint=exc.hint, stderr_tail=exc.stderr_tail)
    except CrashfleetError as exc:
        return HostOutcome(host.name, "failed", key="error", message=exc.message, hint=exc.hint)
    except Exception as exc:  # noqa: BLE001 - one host's surprise must not sink the fan-out
        log.exception("%s: unexpected error", host.name)
        return HostOutcome(host.name, "failed", key="internal", message=f"{type(exc).__name__}: {exc}")


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None
