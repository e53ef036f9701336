"""Controllers of one user side by side on the rig: each keeps its own agents. A CLI run beside
a server while the server's job runs, and one machine under two inventory names. (The reattach
identity exists for, a controller killed and restarted, is tests/integration/test_faults.py's.)"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from crashfleet.agent import protocol
from crashfleet.controller.runtime import Runtime
from crashfleet.controller.settings import Settings
from crashfleet.controller.tools.fleet import fleet_check, fleet_run
from tests.e2e.conftest import CRASHFLEET, LEGACY, StdioServer, server_env, structured
from tests.rig import Rig

pytestmark = pytest.mark.ssh
HOSTS = "web01:web02:web03"
SAMPLE_SECONDS = 12  # the server's job: long enough for a whole CLI run beside it


@pytest.fixture
def server(rig: Rig, tmp_path: Path) -> Iterator[StdioServer]:
    started = StdioServer(LEGACY, rig, tmp_path / "home", CRASHFLEET_COMMAND_WAIT="1")
    yield started
    started.close()


def job_finished(server: StdioServer, job_id: str) -> dict[str, Any]:
    """job_status until no host runs the job (vmstat ends by its duration)."""
    deadline = time.monotonic() + SAMPLE_SECONDS + 60
    while time.monotonic() < deadline:
        status = structured(server.call("job_status", {"job_id": job_id}))
        if status["summary"]["running"] == 0:
            return status
        time.sleep(0.5)  # polling the hosts' job state
    raise AssertionError(f"job {job_id} still running")


def samples(text: str) -> int:
    return sum(1 for line in text.splitlines() if line.split() and line.split()[0].isdigit())


def test_a_cli_beside_the_server_leaves_the_servers_job_whole(server: StdioServer, rig: Rig, tmp_path: Path) -> None:
    started = structured(server.call("fleet_run", {"pattern": HOSTS, "command": "vmstat", "duration": SAMPLE_SECONDS}))
    assert started["summary"]["running"] == 3 and started["job_id"], started
    env = server_env(rig, tmp_path / "home")  # the same user, the same state dir: once the same controller id
    for _ in range(2):  # the CLI comes and goes while the job runs
        cli = subprocess.run(
            [str(CRASHFLEET), "check", HOSTS], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert cli.returncode == 0, cli.stdout + cli.stderr
    status = job_finished(server, started["job_id"])
    assert status["summary"]["ok"] == 3 and not status["errors"], status
    for group in status["groups"]:  # whole: one sample a second, nothing ended early
        assert samples(group["output"] or "") >= SAMPLE_SECONDS - 1, group
    after = structured(server.call("fleet_check", {"pattern": HOSTS}))
    assert after["summary"]["ok"] == 3, after
    assert "Fatal Python error" not in server.stderr()


def alias_inventory(rig: Rig, path: Path) -> Path:
    """web01 and web01.example.com: one machine, one agent dir, two inventory names."""
    doc = yaml.safe_load(rig.inventory.read_text())
    hosts = doc["all"]["children"]["web"]["hosts"]
    doc["all"]["children"]["web"]["hosts"] = {"web01": hosts["web01"], "web01.example.com": dict(hosts["web01"])}
    path.write_text(yaml.safe_dump(doc))
    return path


async def test_one_machine_under_two_names_has_two_agents(rig: Rig, tmp_path: Path) -> None:
    settings = Settings(
        inventory=alias_inventory(rig, tmp_path / "aliases.yml"),
        ssh_known_hosts=rig.known_hosts,
        audit_log=tmp_path / "audit.jsonl",
        host_deadline=20,
    )
    for attempt in range(10):  # cold each time: a new controller, no links
        rt = Runtime.create(settings, who="pytest")
        try:
            result = await fleet_check(rt, "all")
            assert result.summary.ok == 2, (attempt, result)
            pids = {name: link.facts["agent"]["pid"] for name, link in rt.fleet.links.items()}
            assert len(set(pids.values())) == 2, pids
        finally:
            await rt.close()
    rt = Runtime.create(settings, who="pytest")
    try:  # a job run under one name is not the other name's to read
        started = await fleet_run(rt, "web01", "vmstat", duration=30)
        assert started.summary.running == 1, started
        agent_job = rt.jobs.get(str(started.job_id)).host_jobs["web01"]
        other = rt.fleet.host("web01.example.com")
        with pytest.raises(Exception, match="no job|unknown|earlier agent"):
            await rt.fleet.call(other, protocol.JOB_STATUS, {"job_id": agent_job})
    finally:
        await rt.close()
