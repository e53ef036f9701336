"""Two worker processes own the links' SSH side (controller/shards.py), on real sshd hosts: the
fan-out answers as in-process (groups, progress, outputs, stages, down hosts, jobs), and a worker
killed with SIGKILL takes only its shard's links, which come back by themselves with their jobs."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from crashfleet.controller.runtime import Runtime
from crashfleet.controller.settings import Settings
from crashfleet.controller.shards import Shards
from crashfleet.controller.tools.fleet import fleet_check, fleet_run
from crashfleet.controller.tools.jobs import job_status
from crashfleet.controller.tools.output import output_page, output_search
from tests.conftest import wait_no_agents
from tests.helpers import cwd, pids_matching, wait_until
from tests.rig import Rig, free_port

pytestmark = pytest.mark.ssh
HOSTS = ["s01", "s02", "s03", "s04"]
SAMPLE_SECONDS = 8


@pytest.fixture(scope="module")
def srig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with Rig(tmp_path_factory.mktemp("shards"), len(HOSTS), port=free_port(len(HOSTS)), prefix="s") as rig:
        yield rig


@pytest.fixture
async def srt(srig: Rig, tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(
        inventory=srig.inventory,
        ssh_known_hosts=srig.known_hosts,
        audit_log=tmp_path / "audit.jsonl",
        host_deadline=20,
        ssh_keepalive=1,
        command_wait=0.5,
        workers=2,
    )
    rt = Runtime.create(settings, who="pytest")
    yield rt
    pids = [pid for pid in shards(rt).pids() if pid]
    await rt.close()
    assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")], "a worker outlived its controller"
    await wait_no_agents(srig.base, timeout=30)


def shards(rt: Runtime) -> Shards:
    found = rt.fleet.shards()
    assert found is not None, "workers=2 gave no worker processes"
    return found


def shard_hosts(rt: Runtime, index: int) -> set[str]:
    return {name for name in HOSTS if shards(rt).of(name) is shards(rt).shards[index]}


def reachable(rt: Runtime, host: str) -> bool:
    link = rt.fleet.links.get(host)
    return host not in rt.fleet.down and link is not None and link.alive


def samplers(rig: Rig) -> list[int]:
    return [pid for pid in pids_matching("vmstat", "-w") if cwd(pid).startswith(str(rig.base))]


async def test_the_fan_out_answers_as_in_process(srt: Runtime) -> None:
    assert shard_hosts(srt, 0) and shard_hosts(srt, 1), "both workers must hold hosts"
    events: list[tuple[float, int, str]] = []

    async def progress(done: float, total: int, message: str) -> None:
        events.append((done, total, message))

    checked = await fleet_check(srt, "all", progress=progress)
    assert checked.summary.ok == 4 and [g.hosts for g in checked.groups] == ["s[01-04]"], checked
    assert [done for done, _, _ in events] == [1, 2, 3, 4] and {total for _, total, _ in events} == {4}, events
    assert len({pid for pid in shards(srt).pids() if pid}) == 2, "one worker process per shard"

    ran = await fleet_run(srt, "all", "uname")
    assert ran.summary.ok == 4 and len(ran.groups) == 1 and os.uname().release in (ran.groups[0].output or ""), ran
    page = await output_page(srt, ran.groups[0].output_ids[0])
    assert os.uname().release in page.text
    found = await output_search(srt, ran.groups[0].output_ids[0], "Linux")
    assert found.matches and found.matches[0].line == 1, found


async def test_a_killed_worker_takes_only_its_shards_links_and_they_come_back(srt: Runtime) -> None:
    assert (await fleet_check(srt, "all")).summary.ok == 4
    victim, survivor = shard_hosts(srt, 0), shard_hosts(srt, 1)
    old = shards(srt).pids()
    assert old[0] is not None
    os.kill(old[0], signal.SIGKILL)
    assert await wait_until(lambda: victim <= set(srt.fleet.down)), "the dead worker's hosts are not down"
    result = await fleet_check(srt, "all")
    assert {e.host for e in result.errors} == victim and result.summary.ok == len(survivor), result
    for error in result.errors:
        assert error.status == "unreachable" and "reconnecting in the background" in error.message, error
    assert all(reachable(srt, host) for host in survivor)
    assert await wait_until(lambda: all(reachable(srt, h) for h in HOSTS), timeout=60), "the shard did not come back"
    assert (await fleet_check(srt, "all")).summary.ok == 4
    new = shards(srt).pids()
    assert new[0] not in (None, old[0]) and new[1] == old[1], (old, new)  # a new worker; the other untouched


async def test_a_job_outlives_its_worker_and_is_read_whole(srig: Rig, srt: Runtime) -> None:
    [host] = sorted(shard_hosts(srt, 1))[:1]
    started = await fleet_run(srt, host, "vmstat", duration=SAMPLE_SECONDS)
    assert started.summary.running == 1 and started.job_id, started
    assert await wait_until(lambda: len(samplers(srig)) == 1)
    pid = shards(srt).pids()[1]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert await wait_until(lambda: host in srt.fleet.down), "the drop was not noticed"
    assert len(samplers(srig)) == 1, "the job died with its worker"
    assert await wait_until(lambda: reachable(srt, host), timeout=60), f"{host} did not come back by itself"
    for _ in range(200):
        status = await job_status(srt, started.job_id)
        if status.summary.running == 0:
            break
        await asyncio.sleep(0.25)
    assert status.summary.ok == 1, status
    text = status.groups[0].output or ""
    lines = [line for line in text.splitlines() if line.split() and line.split()[0].isdigit()]
    assert len(lines) >= SAMPLE_SECONDS - 1, text  # nothing lost while its link was down
    assert samplers(srig) == []


async def test_a_hung_sshd_names_its_stage_through_the_worker(srig: Rig, srt: Runtime) -> None:
    srig.pause_host("s04")
    try:
        result = await fleet_check(srt, "all", timeout=5)
        assert result.summary.ok == 3 and result.summary.timeout == 1, result
        [error] = result.errors
        assert error.host == "s04" and "stage: ssh handshake" in error.message, error
        assert await wait_until(lambda: "s04" in srt.fleet.down)
        again = await fleet_check(srt, "s04", timeout=5)
        assert again.summary.unreachable == 1 and "unreachable since" in again.errors[0].message
    finally:
        srig.resume_host("s04")
    assert await wait_until(lambda: reachable(srt, "s04"), timeout=60)
    assert (await fleet_check(srt, "s04")).summary.ok == 1
