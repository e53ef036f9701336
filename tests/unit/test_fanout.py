"""The fan-out engine: window, deadline, and no exception escaping a host."""

from __future__ import annotations

import asyncio
from pathlib import Path

from crashfleet.controller.errors import HostError, Unreachable
from crashfleet.controller.fleet import Fleet
from crashfleet.controller.grouping import HostOutcome
from crashfleet.controller.settings import Settings
from crashfleet.inventory import Host, load_inventory


def hosts(tmp_path: Path, n: int) -> list[Host]:
    path = tmp_path / "inv.ini"
    path.write_text(f"[web]\nweb[01:{n:02d}]\n")
    return load_inventory(path).match("web")


async def test_window_bounds_concurrency(tmp_path: Path) -> None:
    fleet = Fleet(Settings(fanout=3, inventory=tmp_path / "inv.ini"))
    running = peak = 0

    async def op(host: Host) -> HostOutcome:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return HostOutcome(host.name, "ok")

    seen: list[tuple[int, int]] = []

    async def progress(done: int, total: int, message: str) -> None:
        seen.append((done, total))

    outcomes, _ = await fleet.fan_out(hosts(tmp_path, 10), op, progress=progress)
    assert peak == 3 and len(outcomes) == 10
    assert seen[-1] == (10, 10) and [d for d, _ in seen] == list(range(1, 11))


async def test_every_host_ends_with_a_status(tmp_path: Path) -> None:
    fleet = Fleet(Settings(inventory=tmp_path / "inv.ini"))

    async def op(host: Host) -> HostOutcome:
        if host.name == "web01":
            await asyncio.sleep(5)
        if host.name == "web02":
            raise Unreachable("cannot connect", "is it up?")
        if host.name == "web03":
            raise HostError("agent said no", kind="policy_denied")
        if host.name == "web04":
            raise ZeroDivisionError("a bug")
        return HostOutcome(host.name, "ok")

    outcomes, elapsed = await fleet.fan_out(hosts(tmp_path, 5), op, deadline=0.3)
    status = {o.host: o.status for o in outcomes}
    assert status == {"web01": "timeout", "web02": "unreachable", "web03": "failed", "web04": "failed", "web05": "ok"}
    assert elapsed < 2000
    assert "ZeroDivisionError" in (outcomes[3].message or "")
