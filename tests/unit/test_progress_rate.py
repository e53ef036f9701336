"""A large fan-out rate-limits its host-count progress (as MCP asks), never leaving the count stale:
reports still increase to the total, and a count held back is sent once its interval is over."""

from __future__ import annotations

import asyncio
from pathlib import Path

from crashfleet.controller.fleet import Fleet
from crashfleet.controller.grouping import HostOutcome
from crashfleet.controller.progress import PER_HOST
from crashfleet.controller.settings import Settings
from crashfleet.inventory import Host, load_inventory

N = 4 * PER_HOST


def hosts(tmp_path: Path, n: int) -> list[Host]:
    path = tmp_path / "inv.ini"
    path.write_text(f"[web]\nweb[001:{n:03d}]\n")
    return load_inventory(path).match("web")


async def test_hosts_done_together_send_few_reports_ending_at_the_total(tmp_path: Path) -> None:
    fleet = Fleet(Settings(fanout=N, inventory=tmp_path / "inv.ini"))
    seen: list[float] = []

    async def progress(done: float, total: int, message: str) -> None:
        seen.append(done)

    async def op(host: Host) -> HostOutcome:
        return HostOutcome(host.name, "ok")

    outcomes, _ = await fleet.fan_out(hosts(tmp_path, N), op, progress=progress)
    assert len(outcomes) == N and seen[-1] == N and seen == sorted(set(seen))
    assert len(seen) < N // 2, f"{len(seen)} reports for {N} hosts finishing together"


async def test_a_count_held_back_is_sent_before_the_last_host_ends(tmp_path: Path) -> None:
    fleet = Fleet(Settings(fanout=N, inventory=tmp_path / "inv.ini"))
    seen: list[float] = []
    all_but_one = asyncio.Event()

    async def progress(done: float, total: int, message: str) -> None:
        seen.append(done)
        if done == N - 1:
            all_but_one.set()

    async def op(host: Host) -> HostOutcome:
        if host.name == "web001":
            await all_but_one.wait()  # ends only once the count of the others was reported
        return HostOutcome(host.name, "ok")

    outcomes, _ = await fleet.fan_out(hosts(tmp_path, N), op, progress=progress)
    assert len(outcomes) == N and seen[-2:] == [N - 1, N]
