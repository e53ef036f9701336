"""No inventory at all: the fleet is this machine, reached without SSH."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from crashfleet.controller.runtime import Runtime
from crashfleet.controller.settings import Settings
from crashfleet.controller.tools.fleet import fleet_check, fleet_hosts, fleet_run
from tests.conftest import wait_no_agents


async def test_local_machine_is_the_default_fleet(tmp_path: Path) -> None:
    agent_dir = tmp_path / "home" / ".cache" / "crashfleet"
    os.environ["HOME"], old_home = str(tmp_path / "home"), os.environ["HOME"]
    try:
        rt = Runtime.create(Settings(audit_log=tmp_path / "audit.jsonl"))
        hosts = fleet_hosts(rt)
        assert hosts.count == 1 and hosts.details[0].name == "localhost" and hosts.details[0].connection == "local"
        result = await fleet_check(rt)
        assert result.summary.ok == 1, result
        assert result.groups[0].data and result.groups[0].data["kernel"] == platform.release()
        run = await fleet_run(rt, "localhost", "uname")
        assert platform.release() in (run.groups[0].output or "")
        assert any(p.name.startswith("crashfleet-agent-") for p in agent_dir.iterdir())
        await rt.close()
        await wait_no_agents(str(agent_dir))
    finally:
        os.environ["HOME"] = old_home
    audit = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert any('"method":"run"' in line and '"host":"localhost"' in line for line in audit)


def test_cli_check_and_hosts_on_the_local_machine(tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}
    cli = [sys.executable, "-m", "crashfleet.controller"]
    hosts = subprocess.run([*cli, "hosts"], capture_output=True, text=True, env=env, timeout=60)
    assert hosts.returncode == 0 and "localhost" in hosts.stdout, hosts.stderr
    check = subprocess.run([*cli, "check"], capture_output=True, text=True, env=env, timeout=60)
    assert check.returncode == 0, check.stderr
    assert "1 host(s)" in check.stdout and "1 ok" in check.stdout and platform.release() in check.stdout
    bad = subprocess.run([*cli, "hosts", "nosuch"], capture_output=True, text=True, env=env, timeout=60)
    assert (bad.returncode == 2 and "localhost" in bad.stderr) or "ungrouped" in bad.stderr
