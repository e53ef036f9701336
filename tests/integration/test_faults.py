"""Real faults on a rig of its own: a dropped TCP link, a partition (nftables drops one host's
SSH packets), a hung sshd (SIGSTOP), a killed agent, a killed controller process, servers that
answer garbage. Each test checks what the user sees and that nothing is lost or left running."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from crashfleet.controller.models import FanoutResult
from crashfleet.controller.runtime import Runtime
from crashfleet.controller.settings import Settings
from crashfleet.controller.tools.fleet import fleet_check, fleet_run
from crashfleet.controller.tools.jobs import job_cancel, job_status, jobs_list
from tests.conftest import wait_no_agents
from tests.helpers import cwd, pids_matching, wait_until
from tests.rig import Rig, free_port

pytestmark = pytest.mark.ssh
CONTROLLER_ID = "0123456789abcdef"
SAMPLE_SECONDS = 8  # a vmstat job long enough to drop its link in the middle


@pytest.fixture(scope="module")
def frig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with Rig(tmp_path_factory.mktemp("faults"), 4, port=free_port(4), prefix="f") as rig:
        yield rig


@pytest.fixture
def fsettings(frig: Rig, tmp_path: Path) -> Settings:
    # Keepalive every second: a silent partition is seen within 1 s x (3 + 1) = 4 s.
    return Settings(
        inventory=frig.inventory,
        ssh_known_hosts=frig.known_hosts,
        audit_log=tmp_path / "audit.jsonl",
        host_deadline=20,
        ssh_keepalive=1,
        ssh_keepalive_count=3,
        command_wait=0.5,
        controller_id=CONTROLLER_ID,
    )


@pytest.fixture
async def frt(fsettings: Settings, frig: Rig) -> AsyncIterator[Runtime]:
    rt = Runtime.create(fsettings, who="pytest")
    yield rt
    await rt.close()
    await wait_no_agents(frig.base, timeout=30)  # leases end when no job runs: nothing may stay


def samplers(rig: Rig) -> list[int]:
    return [pid for pid in pids_matching("vmstat", "-w") if cwd(pid).startswith(str(rig.base))]


async def start_sampler(rt: Runtime, host: str, seconds: float = SAMPLE_SECONDS) -> str:
    result = await fleet_run(rt, host, "vmstat", duration=seconds)
    assert result.summary.running == 1 and result.job_id, result
    return result.job_id


async def finished(rt: Runtime, job_id: str) -> FanoutResult:
    """job_status until no host runs the job any more (vmstat ends by its duration)."""
    for _ in range(200):
        status = await job_status(rt, job_id)
        if status.summary.running == 0:
            return status
        await asyncio.sleep(0.25)
    raise AssertionError(f"job {job_id} still running")


def samples(result: FanoutResult) -> int:
    """vmstat's sample lines in the first group's output (a whole run: one a second)."""
    text = result.groups[0].output or ""
    return sum(1 for line in text.splitlines() if line.split() and line.split()[0].isdigit())


def reachable(rt: Runtime, host: str) -> bool:
    link = rt.fleet.links.get(host)
    return host not in rt.fleet.down and link is not None and link.alive


@contextlib.contextmanager
def partition(host: Any) -> Iterator[None]:
    """Drop every packet to and from the host's sshd (both directions, loopback only)."""
    table = f"crashfleet_test_{os.getpid()}"
    rules = (
        f"table inet {table} {{\n chain out {{\n  type filter hook output priority 0; policy accept;\n"
        f"  ip daddr {host.address} tcp dport {host.port} drop\n"
        f"  ip saddr {host.address} tcp sport {host.port} drop\n }}\n}}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True, timeout=30)
    try:
        yield
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], check=True, timeout=30)


async def test_job_outlives_a_dropped_connection_and_its_result_is_whole(frig: Rig, frt: Runtime) -> None:
    job_id = await start_sampler(frt, "f01")
    assert await wait_until(lambda: len(samplers(frig)) == 1)
    frt.fleet.links["f01"].transport.conn.abort()  # type: ignore[attr-defined]  # the TCP link drops
    assert await wait_until(lambda: "f01" in frt.fleet.down), "the drop was not noticed"
    assert len(samplers(frig)) == 1, "the job died with its link"
    assert await wait_until(lambda: reachable(frt, "f01"), timeout=60), "f01 did not come back by itself"
    status = await finished(frt, job_id)
    assert status.summary.ok == 1, status
    assert samples(status) >= SAMPLE_SECONDS - 1, status.groups[0].output  # nothing lost while detached
    assert samplers(frig) == []


async def test_partition_fails_fast_then_heals_and_the_job_is_read(frig: Rig, frt: Runtime) -> None:
    job_id = await start_sampler(frt, "f02", seconds=SAMPLE_SECONDS + 4)
    with partition(frig.host("f02")):
        assert await wait_until(lambda: "f02" in frt.fleet.down, timeout=30), "keepalive missed the partition"
        result = await fleet_check(frt, "f01:f02:f03")
        assert result.summary.ok == 2 and result.summary.unreachable == 1, result
        [error] = result.errors
        assert error.host == "f02" and "unreachable since" in error.message and "background" in error.message
        again = await job_status(frt, job_id)  # answered from the known state, not after a deadline
        assert again.summary.unreachable == 1 and "unreachable since" in again.errors[0].message
    assert await wait_until(lambda: reachable(frt, "f02"), timeout=60), "f02 did not come back by itself"
    status = await finished(frt, job_id)
    assert status.summary.ok == 1 and samples(status) >= SAMPLE_SECONDS + 3, status
    assert samplers(frig) == []


async def test_partition_mid_call_keeps_the_job_the_call_started(frig: Rig, frt: Runtime) -> None:
    frt.settings.command_wait = 20  # the call waits on the host: the partition comes in the middle of it
    call = asyncio.ensure_future(fleet_run(frt, "f03", "vmstat", duration=SAMPLE_SECONDS))
    assert await wait_until(lambda: len(samplers(frig)) == 1)
    with partition(frig.host("f03")):
        result = await call  # ends when keepalive sees the partition, not at the deadline
        assert result.summary.running == 1 and result.job_id, result
        assert "link dropped" in (result.groups[0].output or ""), result
    assert await wait_until(lambda: reachable(frt, "f03"), timeout=60), "f03 did not come back by itself"
    status = await finished(frt, result.job_id)  # the job id came before the answer: nothing is lost
    assert status.summary.ok == 1 and samples(status) >= SAMPLE_SECONDS - 1, status
    assert samplers(frig) == []


async def test_hung_sshd_names_the_stage_and_does_not_slow_the_others(frig: Rig, frt: Runtime) -> None:
    frig.pause_host("f03")
    try:
        result = await fleet_check(frt, "all", timeout=5)
        assert result.summary.ok == 3 and result.summary.timeout == 1, result
        [error] = result.errors
        assert error.host == "f03" and "stage: ssh handshake" in error.message, error
        assert error.hint and "sshd" in error.hint
        assert await wait_until(lambda: "f03" in frt.fleet.down)
        again = await fleet_check(frt, "f03", timeout=5)
        assert again.summary.unreachable == 1 and "unreachable since" in again.errors[0].message
    finally:
        frig.resume_host("f03")
    assert await wait_until(lambda: reachable(frt, "f03"), timeout=60)
    assert (await fleet_check(frt, "f03")).summary.ok == 1


async def test_killed_agent_leaves_no_job_and_says_what_became_of_it(frig: Rig, frt: Runtime) -> None:
    job_id = await start_sampler(frt, "f04", seconds=60)
    assert await wait_until(lambda: len(samplers(frig)) == 1)
    os.kill(frt.fleet.links["f04"].facts["agent"]["pid"], signal.SIGKILL)
    assert await wait_until(lambda: not samplers(frig)), "the job outlived its killed agent"
    status = await job_status(frt, job_id)  # a fresh agent answers from its predecessor's job table
    assert status.summary.failed == 1, status
    [error] = status.errors
    assert "earlier agent" in error.message and "died while it ran" in error.message, error
    assert status.groups[0].output_ids, "the output so far is not offered"
    assert "f04" not in frt.fleet.down  # the host never was unreachable: only its agent died


CONTROLLER = """
import asyncio, json, sys
from crashfleet.controller.runtime import Runtime
from crashfleet.controller.settings import Settings
from crashfleet.controller.tools.fleet import fleet_run

async def main():
    rt = Runtime.create(Settings(), who="doomed")
    result = await fleet_run(rt, sys.argv[1], "vmstat", duration=float(sys.argv[2]))
    print(json.dumps({"job_id": result.job_id, "running": result.summary.running}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_controller_killed_mid_job_finds_its_job_again(frig: Rig, fsettings: Settings, frt: Runtime) -> None:
    env = {
        **os.environ,
        "CRASHFLEET_INVENTORY": str(frig.inventory),
        "CRASHFLEET_SSH_KNOWN_HOSTS": str(frig.known_hosts),
        "CRASHFLEET_AUDIT_LOG": str(fsettings.audit_path()),
        "CRASHFLEET_COMMAND_WAIT": "0.5",
        "CRASHFLEET_CONTROLLER_ID": CONTROLLER_ID,
    }
    doomed = subprocess.Popen([sys.executable, "-c", CONTROLLER, "f01", "120"], stdout=subprocess.PIPE, env=env)
    try:
        assert doomed.stdout is not None
        started = json.loads(doomed.stdout.readline())
        assert started["running"] == 1, started
    finally:
        doomed.kill()  # SIGKILL: no clean close, its SSH connections just end
        doomed.wait()
    assert await wait_until(lambda: len(samplers(frig)) == 1)
    restarted = Runtime.create(fsettings, who="pytest")  # the same state dir: its job registry
    try:
        listed = {job.job_id: job for job in jobs_list(restarted).jobs}
        assert listed[started["job_id"]].state == "running"
        status = await job_status(restarted, started["job_id"])
        assert status.summary.running == 1, status  # reattached to the agent that kept the job
        cancelled = await job_cancel(restarted, started["job_id"])
        assert cancelled.summary.ok == 1 and samples(cancelled) >= 1, cancelled
        assert samplers(frig) == []
    finally:
        await restarted.close()


class FakeServer:
    """A TCP listener on loopback that plays a broken sshd: `mode` says how."""

    def __init__(self, address: str, mode: str) -> None:
        self.mode = mode
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        if mode != "silent":  # silent: connects complete in the backlog, nothing is ever said
            threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.mode == "garbage":  # no SSH banner, ever: bytes with no line end, and the link stays
                conn.sendall(os.urandom(16384).replace(b"\n", b"x"))
                self.conns.append(conn)
            else:  # midframe: a banner, then the start of a packet, then the connection ends
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n\x00\x00\x05")
                conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


def test_broken_servers_each_end_in_their_own_status(frig: Rig, tmp_path: Path) -> None:
    fakes = {
        "silent": FakeServer("127.0.0.201", "silent"),
        "garbage": FakeServer("127.0.0.202", "garbage"),
        "midframe": FakeServer("127.0.0.203", "midframe"),
    }
    lines = [
        f"{name} ansible_host={fake.sock.getsockname()[0]} ansible_port={fake.port}" for name, fake in fakes.items()
    ]
    rig_host = frig.host("f01")
    lines.append(
        f"f01 ansible_host={rig_host.address} ansible_port={rig_host.port} "
        f"ansible_ssh_private_key_file={frig.client_key} crashfleet_agent_dir={rig_host.agent_dir}"
    )
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[mixed]\n" + "\n".join(lines) + "\n")
    settings = Settings(
        inventory=inventory, ssh_known_hosts=frig.known_hosts, audit_log=tmp_path / "a.jsonl", host_deadline=8
    )

    async def run() -> FanoutResult:
        rt = Runtime.create(settings, who="pytest")
        try:
            return await fleet_check(rt, "mixed")
        finally:
            await rt.close()

    try:
        result = asyncio.run(run())
    finally:
        for fake in fakes.values():
            fake.close()
    by_host = {e.host: e for e in result.errors}
    assert result.summary.ok == 1 and set(by_host) == {"silent", "garbage", "midframe"}, result
    assert by_host["silent"].status == "timeout" and "stage: ssh handshake" in by_host["silent"].message
    assert by_host["garbage"].status == "unreachable" and "banner" in by_host["garbage"].message.lower()
    assert by_host["midframe"].status == "unreachable" and "cannot connect" in by_host["midframe"].message


async def test_a_call_just_after_a_timeout_waits_for_the_liveness_ping_not_its_deadline(
    frig: Rig, fsettings: Settings
) -> None:
    """Keepalive slower than the 5 s ping (the default, 20 s): the ping decides first. The second
    call starts while it runs and ends with its verdict (down), not at its own 30 s deadline."""
    settings = fsettings.model_copy(update={"ssh_keepalive": 5.0, "controller_id": None})
    rt = Runtime.create(settings, who="pytest")
    try:
        assert (await fleet_check(rt, "f04")).summary.ok == 1  # a live link first
        with partition(frig.host("f04")):
            first = await fleet_run(rt, "f04", "uname", timeout=2)
            assert first.summary.timeout == 1 and "stage: call" in first.errors[0].message, first
            second = await fleet_run(rt, "f04", "uname", timeout=30)
            assert second.summary.unreachable == 1, second
            assert "stopped answering" in second.errors[0].message, second.errors
        assert await wait_until(lambda: reachable(rt, "f04"), timeout=60), "f04 did not come back by itself"
    finally:
        await rt.close()
    await wait_no_agents(frig.base, timeout=30)
