"""The job lease on real agent processes (the zipapp, its own policy): a job outlives its
controller's link for `job_lease`, a later agent of the same controller reattaches to it, and
past the lease nothing is left running."""

from __future__ import annotations

import json
from pathlib import Path

from tests.agentproc import PolicyAgent
from tests.dumps.agentproc import Agent, alive
from tests.helpers import cwd, pids_matching, wait_until

KEY = "feedfacecafe0001"


def vmstats(tmp_path: Path) -> list[int]:
    return [p for p in pids_matching("vmstat", "-w") if cwd(p).startswith(str(tmp_path))]


def next_agent(first: PolicyAgent, tmp_path: Path, name: str) -> Agent:
    """Another agent in the same dir, as a new SSH session would start it."""
    return Agent(tmp_path / "agent.pyz", first.dir, tmp_path / "policy.json", tmp_path / f"{name}.log")


async def test_past_the_lease_the_job_is_stopped_and_the_agent_exits(tmp_path: Path) -> None:
    agent = PolicyAgent(tmp_path, job_lease=1.0)
    try:
        agent.result("hello", controller=KEY)
        job = agent.result("run", command="vmstat", duration=300)["job_id"]
        assert await wait_until(lambda: len(vmstats(tmp_path)) == 1)
        assert agent.stop() == 0  # stdin closed with a job running: the lease, then the end
    finally:
        agent.kill()
    assert not vmstats(tmp_path)
    table = json.loads((agent.dir / "jobs.json").read_text())["jobs"]
    assert table[job]["state"] == "aborted" and "job lease (1s)" in table[job]["stop_reason"], table


async def test_a_later_agent_of_the_same_controller_reattaches(tmp_path: Path) -> None:
    first = PolicyAgent(tmp_path, job_lease=120.0)
    later = stranger = None
    try:
        old_pid = first.result("hello", controller=KEY)["facts"]["agent"]["pid"]
        job = first.result("run", command="vmstat", duration=3)["job_id"]
        first.proc.stdin.close()  # type: ignore[union-attr]  # the link drops; the job goes on
        assert await wait_until(lambda: alive(old_pid) and not vmstats(tmp_path), 30), "the job did not run on"
        later = next_agent(first, tmp_path, "later")
        hello = later.result("hello", controller=KEY)
        assert hello["facts"]["agent"]["pid"] == old_pid and hello["lease"]["attaches"] == 1, hello
        status = later.result("job.status", job_id=job, wait=10)
        assert status["state"] == "done" and status["page"]["total_lines"] >= 4, status  # header + 3 samples
        stranger = next_agent(first, tmp_path, "stranger")  # another controller: its own agent
        other = stranger.result("hello", controller="0000000000000bad")
        assert other["facts"]["agent"]["pid"] != old_pid
        assert stranger.error("job.status", job_id=job)["data"]["kind"] in ("job_lost", "unknown_job")
        assert later.stop() == 0 and stranger.stop() == 0
        assert await wait_until(lambda: not alive(old_pid), 30), "the old agent outlived its last link"
    finally:
        for agent in (first, later, stranger):
            if agent is not None and agent.proc.poll() is None:
                agent.proc.kill()
                agent.proc.wait()


async def test_without_a_lease_jobs_end_with_the_link(tmp_path: Path) -> None:
    agent = PolicyAgent(tmp_path, job_lease=0)
    try:
        agent.result("hello", controller=KEY)
        agent.result("run", command="vmstat", duration=300)
        assert await wait_until(lambda: len(vmstats(tmp_path)) == 1)
        assert agent.stop() == 0
    finally:
        agent.kill()
    assert await wait_until(lambda: not vmstats(tmp_path), 10)


def send(agent: Agent, method: str, **params: object) -> None:
    """A notification (no answer), as the controller's link sends `shutdown`."""
    assert agent.proc.stdin
    agent.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": method, "params": params}).encode() + b"\n")
    agent.proc.stdin.flush()


async def test_a_superseded_agent_ends_cleanly_when_its_last_controller_leaves(tmp_path: Path) -> None:
    """Its first connection's reader still blocks on stdin when it exits: that must not be a crash."""
    first = PolicyAgent(tmp_path, job_lease=120.0)
    later = None
    try:
        first.result("hello", controller=KEY)
        first.result("run", command="vmstat", duration=300)
        assert await wait_until(lambda: len(vmstats(tmp_path)) == 1)
        later = next_agent(first, tmp_path, "later")
        assert later.result("hello", controller=KEY)["lease"]["attaches"] == 1  # relayed to the first
        send(later, "shutdown")  # the controller leaves on purpose: no lease, its jobs end
        assert later.stop() == 0
        assert first.proc.wait(30) == 0  # its own stdin still open: no abort at exit
        assert "Fatal Python error" not in (tmp_path / "agent.log").read_text()
        assert not vmstats(tmp_path)
    finally:
        first.kill()
        if later is not None and later.proc.poll() is None:
            later.proc.kill()
            later.proc.wait()


async def test_a_dead_agents_socket_is_removed_never_connected(tmp_path: Path) -> None:
    first = PolicyAgent(tmp_path, job_lease=120.0)
    later = None
    try:
        first.result("hello", controller=KEY)
        sockets = list((first.dir / "run").glob(f"{KEY}-*.sock"))
        assert len(sockets) == 1
        first.proc.kill()  # SIGKILL: its listener is never closed, the socket file stays
        first.proc.wait()
        assert sockets[0].exists()
        later = next_agent(first, tmp_path, "other")
        other = later.result("hello", controller="0000000000000bad")  # another controller's agent sweeps
        assert other["lease"]["attaches"] == 0
        assert not sockets[0].exists() and not sockets[0].with_suffix(".lock").exists()
        assert later.stop() == 0
    finally:
        first.kill()
        if later is not None and later.proc.poll() is None:
            later.proc.kill()
            later.proc.wait()


def test_a_request_sent_just_before_stdin_ends_is_still_answered(tmp_path: Path) -> None:
    """As sshd's forced command sees it: the request, then EOF at once."""
    agent = PolicyAgent(tmp_path, job_lease=120.0)
    try:
        assert agent.proc.stdin and agent.proc.stdout
        agent.proc.stdin.write(b'{"jsonrpc": "2.0", "id": 1, "method": "hello", "params": {}}\n')
        agent.proc.stdin.close()
        answer = json.loads(agent.proc.stdout.readline())
        assert answer["id"] == 1 and answer["result"]["build"], answer
        assert agent.proc.wait(30) == 0
    finally:
        agent.kill()
