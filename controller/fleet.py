"""The fleet: pattern -> hosts, one agent link per host, fan-out with a window and deadlines."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crashfleet.agent import protocol
from crashfleet.inventory import Host, Inventory, InventoryError, PatternError, load_inventory

from . import stages
from .audit import AuditLog
from .budget import Rest
from .errors import ConnectLost, CrashfleetError, HostError, Unreachable, UsageError
from .grouping import HostOutcome
from .identity import Identity
from .link import AgentLink
from .progress import FanoutProgress, Progress, watching
from .provision import open_link
from .settings import Settings
from .window import AdaptiveWindow

log = logging.getLogger(__name__)
HostOp = Callable[[Host], Awaitable[HostOutcome]]
SETUP_RETRY: tuple[type[HostError], ...] = (ConnectLost,)  # set-up failures worth another try within the deadline
RECONNECT_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)  # seconds between background reconnects
ALIVE_PROBE = 5.0  # seconds a ping may take when a call timed out: alive but slow, or gone?


@dataclass
class Down:
    """A host known to be unreachable: later calls answer at once with this."""

    since: float
    message: str
    retry: asyncio.Task[None] | None = None

    def error(self, host: str) -> Unreachable:
        when = time.strftime("%H:%M:%S", time.localtime(self.since))
        return Unreachable(
            f"{host} unreachable since {when} ({self.message}); reconnecting in the background",
            "the host answers again by itself once it is reachable; fleet_check shows when",
            kind="down",
        )


class Fleet:
    """Keeps links alive across calls: the second call to a host costs one round trip."""

    def __init__(self, settings: Settings, audit: AuditLog | None = None, identity: Identity | None = None) -> None:
        self.settings = settings
        self.audit = audit
        self.identity = identity or Identity(settings.controller_key(), "unclaimed")
        self.links: dict[str, AgentLink] = {}
        self.down: dict[str, Down] = {}
        self.setup_window = AdaptiveWindow(settings.fanout)
        self._closing = False
        self._locks: dict[str, asyncio.Lock] = {}
        self._inventory: Inventory | None = None
        self._inventory_stamp: float | None = None
        self._background: set[asyncio.Future[None]] = set()  # fire-and-forget work, kept from the GC
        self._probes: dict[str, asyncio.Future[None]] = {}  # host -> its liveness ping, while it runs

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

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
        """The host's live link, connecting (and provisioning) on first use or after a drop.
        A host known to be down answers at once; it is reconnected in the background."""
        probe = self._probes.get(host.name)
        if probe is not None:  # a timed-out call's ping is deciding: its answer, not our deadline
            stages.mark("liveness")
            await asyncio.shield(probe)
        lock = self._locks.setdefault(host.name, asyncio.Lock())
        async with lock:
            link = self.links.get(host.name)
            if link is not None and link.alive:
                return link
            down = self.down.get(host.name)
            if down is not None:
                raise down.error(host.name)
            if link is not None:
                self._forget(host.name, link)
            return await self._open(host)

    async def _open(self, host: Host) -> AgentLink:
        """Set up a link, retrying what a loaded host drops mid-handshake, within the caller's deadline."""
        for attempt in range(4):
            try:
                async with self.setup_window.slot():
                    link = await open_link(host, self.settings, self.identity)
                break
            except HostError as exc:
                if isinstance(exc, SETUP_RETRY) and attempt < 3:
                    await asyncio.sleep(0.2 * 2**attempt)
                    continue
                self._audit(host.name, "connect", {"address": host.address}, f"error: {exc.message}", error=exc)
                if isinstance(exc, Unreachable):
                    self.mark_down(host, exc.message)
                raise
        self._adopt(host, link)
        self._audit(host.name, "connect", {"address": host.address}, "ok", link.hello.get("build"))
        return link

    def mark_down(self, host: Host, message: str) -> None:
        """Known unreachable: answer at once from now on, and reconnect in the background."""
        if host.name in self.down or self._closing:
            return
        down = Down(time.time(), message)
        self.down[host.name] = down
        down.retry = asyncio.ensure_future(self._reconnect(host, down))
        log.warning("%s: down (%s); reconnecting in the background", host.name, message)

    async def _reconnect(self, host: Host, down: Down) -> None:
        for attempt in itertools.count():
            await asyncio.sleep(RECONNECT_BACKOFF[min(attempt, len(RECONNECT_BACKOFF) - 1)])
            stages.begin()
            try:
                link = await asyncio.wait_for(
                    open_link(host, self.settings, self.identity), self.settings.host_deadline
                )
            except HostError as exc:
                if not isinstance(exc, Unreachable):  # reachable, but refused (host key, auth): say so at once
                    self.down.pop(host.name, None)
                    return
                down.message = f"{exc.message}; last try {time.strftime('%H:%M:%S')}"
                continue
            except (TimeoutError, OSError):
                down.message = (
                    f"no answer within {self.settings.host_deadline:g} s; last try {time.strftime('%H:%M:%S')}"
                )
                continue
            async with self._locks.setdefault(host.name, asyncio.Lock()):
                old = self.links.get(host.name)
                if old is not None:
                    self._forget(host.name, old)
                self._adopt(host, link)
                self.down.pop(host.name, None)
            self._audit(
                host.name,
                "connect",
                {"address": host.address, "after_down_since": down.since},
                "ok",
                link.hello.get("build"),
            )
            log.warning("%s: reachable again", host.name)
            return

    def _adopt(self, host: Host, link: AgentLink) -> None:
        """The host's link from now on; its connection dropping marks the host down."""
        self.links[host.name] = link
        link.on_lost = lambda reason, name=host.name: self._lost(name, reason)

    def _lost(self, name: str, reason: str) -> None:
        """A link's connection dropped (not an agent that merely ended): the host is down."""
        host = self.inventory().hosts.get(name)
        if host is not None:
            self.mark_down(host, f"connection lost: {reason}")

    def _forget(self, name: str, link: AgentLink) -> None:
        """Drop a link given up as dead; its agent keeps its jobs for the lease."""
        if self.links.get(name) is link:
            del self.links[name]
        self._spawn(link.close(keep_jobs=True))

    def timed_out(self, host: Host, stage: stages.Stage) -> None:
        """A host missed its deadline: before the call, it is down; during one, it is down only
        if the agent does not answer a ping either (else the call was merely slow). Calls that
        start while the ping runs wait for its answer (link())."""
        if stage.name not in ("call", "liveness"):
            self.mark_down(host, f"no answer within the deadline at stage {stage.name!r}")
            return
        link = self.links.get(host.name)
        if link is None or not link.alive or host.name in self._probes:
            return
        probe: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._probes[host.name] = probe
        self._spawn(self._probe(host, link, probe))

    async def _probe(self, host: Host, link: AgentLink, probe: asyncio.Future[None]) -> None:
        try:
            await asyncio.wait_for(link.call(protocol.PING), ALIVE_PROBE)
        except (TimeoutError, HostError):
            self._forget(host.name, link)
            self.mark_down(host, f"the agent stopped answering (no ping reply within {ALIVE_PROBE:g} s)")
        finally:
            del self._probes[host.name]
            probe.set_result(None)

    def connected(self) -> list[str]:
        """Hosts with a live agent link now."""
        return [name for name, link in self.links.items() if link.alive]

    async def checked_hello(self, host: Host, refresh: bool = False) -> protocol.Hello:
        """The host's hello with its facts whole: tool versions probed once (first contact leaves
        them unprobed), re-probed on `refresh`; else a ping proves the agent still answers."""
        link = await self.link(host)
        if refresh or _unprobed(link.hello):
            link.hello["facts"] = await self.call(host, protocol.FACTS, {"refresh": refresh})
        else:
            await self.call(host, protocol.PING)
        return link.hello

    async def call(self, host: Host, method: str, params: dict[str, Any] | None = None) -> Any:
        """One agent call, audited. A dead link is reopened before the call, never after:
        re-sending a call the agent may have started would run it twice."""
        params = params or {}
        link = await self.link(host)
        stages.mark("call")
        try:
            result = await link.call(method, params, on_progress=watching.get())
        except HostError as exc:
            self._audit(host.name, method, params, f"error: {exc.message}", error=exc)
            raise
        self._audit(host.name, method, params, "ok", result)
        return result

    async def fan_out(
        self,
        hosts: list[Host],
        op: HostOp,
        *,
        deadline: float | None = None,
        progress: Progress | None = None,
        ticking: float | None = None,
    ) -> tuple[list[HostOutcome], int]:
        """Run op on every host within the window; each host ends with a status, never an exception.
        `ticking`: the seconds the work is expected to take, for a progress step every second."""
        outcomes, elapsed, _ = await self.fan_out_within(
            hosts, op, budget=None, deadline=deadline, progress=progress, ticking=ticking
        )
        return outcomes, elapsed

    async def fan_out_within(
        self,
        hosts: list[Host],
        op: HostOp,
        *,
        budget: float | None,
        deadline: float | None = None,
        progress: Progress | None = None,
        ticking: float | None = None,
    ) -> tuple[list[HostOutcome], int, Rest | None]:
        """fan_out that answers after `budget` seconds at most: the hosts done by then, and the
        Rest (None when every host answered), whose hosts keep working (controller.budget)."""
        started = time.monotonic()
        window = asyncio.Semaphore(self.settings.fanout)
        limit = deadline or self.settings.host_deadline
        reporter = FanoutProgress(progress, len(hosts)) if progress is not None else None

        async def one(host: Host) -> HostOutcome:
            if reporter is not None:  # this host's task only: its calls' jobs report through it
                watching.set(reporter.watcher(host.name))
            async with window:
                outcome = await self._bounded(host, op, limit)
            if reporter is not None:
                await reporter.host_done(host.name, outcome.status)
            return outcome

        tasks = {host.name: asyncio.ensure_future(one(host)) for host in hosts}
        ticker = asyncio.ensure_future(reporter.ticking(ticking)) if reporter and ticking else None
        try:
            if tasks:
                await asyncio.wait(tasks.values(), timeout=budget)
        except asyncio.CancelledError:
            for task in tasks.values():
                task.cancel()
            raise
        finally:
            if ticker is not None:
                ticker.cancel()
        elapsed = int((time.monotonic() - started) * 1000)
        if all(task.done() for task in tasks.values()):
            return [task.result() for task in tasks.values()], elapsed, None
        if reporter is not None:
            reporter.close()  # the call answers now: its progress token ends with it
        rest = Rest({name: task for name, task in tasks.items() if not task.done()}, started)
        return [task.result() for task in tasks.values() if task.done()], elapsed, rest

    async def _bounded(self, host: Host, op: HostOp, limit: float) -> HostOutcome:
        stage = stages.begin()
        try:
            return await asyncio.wait_for(op(host), limit)
        except TimeoutError:
            self.timed_out(host, stage)
            return HostOutcome(
                host.name,
                "timeout",
                key=f"timeout:{stage.name}",
                message=f"{host.name} did not answer within {limit:g} s (stage: {stage.name})",
                hint=stage.hint(),
            )
        except HostError as exc:
            return HostOutcome(
                host.name,
                exc.status,  # type: ignore[arg-type]
                key=exc.kind,
                message=exc.message,
                hint=exc.hint,
                stderr_tail=exc.stderr_tail,
            )
        except CrashfleetError as exc:
            return HostOutcome(host.name, "failed", key="error", message=exc.message, hint=exc.hint)
        except Exception as exc:  # one host's surprise must not sink the fan-out
            log.exception("%s: unexpected error", host.name)
            return HostOutcome(host.name, "failed", key="internal", message=f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        self._closing = True
        for down in self.down.values():
            if down.retry is not None:
                down.retry.cancel()
        links, self.links = list(self.links.values()), {}
        await asyncio.gather(*(link.close() for link in links), return_exceptions=True)

    def _audit(self, *args: Any, **kwargs: Any) -> None:
        """AuditLog.record, when this fleet keeps one."""
        if self.audit is not None:
            self.audit.record(*args, **kwargs)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _unprobed(hello: protocol.Hello) -> bool:
    return any(tool.get("probed") is False for tool in hello.get("facts", {}).get("tools", {}).values())
