"""SSH as people configure it: ~/.ssh/config with ProxyJump, and keys held by ssh-agent."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from crashfleet.controller.runtime import Runtime
from crashfleet.controller.settings import Settings
from crashfleet.controller.tools.fleet import fleet_check
from tests.helpers import descendants
from tests.rig import Rig


def inventory_with(tmp_path: Path, hosts: dict[str, dict[str, object]]) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"children": {"web": {"hosts": hosts}}}}))
    return path


def settings(rig: Rig, tmp_path: Path, inventory: Path, **extra: object) -> Settings:
    return Settings(inventory=inventory, ssh_known_hosts=rig.known_hosts, audit_log=tmp_path / "audit.jsonl", **extra)  # type: ignore[arg-type]


async def test_proxyjump_from_ssh_config(rig: Rig, tmp_path: Path) -> None:
    jump, target = rig.host("web01"), rig.host("web02")
    config = tmp_path / "ssh_config"
    common = f"  User root\n  IdentityFile {rig.client_key}\n  UserKnownHostsFile {rig.known_hosts}\n"
    config.write_text(
        f"Host jumpbox\n  HostName {jump.address}\n  Port {jump.port}\n{common}"
        f"Host behind\n  HostName {target.address}\n  Port {target.port}\n  ProxyJump jumpbox\n{common}"
    )
    inventory = inventory_with(
        tmp_path, {"web02": {"ansible_host": "behind", "crashfleet_agent_dir": str(target.agent_dir)}}
    )
    rt = Runtime.create(settings(rig, tmp_path, inventory, ssh_config=config))
    before = len(descendants([jump.pid]))
    try:
        result = await fleet_check(rt, "web02")
        assert result.summary.ok == 1, result
        assert len(descendants([jump.pid])) > before, "no SSH session on the jump host: ProxyJump was not used"
    finally:
        await rt.close()


@pytest.fixture
def ssh_agent(tmp_path: Path) -> Iterator[dict[str, str]]:
    sock = tmp_path / "agent.sock"
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            subprocess.run(["sleep", "0.05"])
        yield {"SSH_AUTH_SOCK": str(sock)}
    finally:
        proc.kill()
        proc.wait()


async def test_keys_from_ssh_agent(
    rig: Rig, tmp_path: Path, ssh_agent: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = rig.host("web03")
    inventory = inventory_with(
        tmp_path,
        {
            "web03": {
                "ansible_host": host.address,
                "ansible_port": host.port,
                "ansible_user": "root",
                "crashfleet_agent_dir": str(host.agent_dir),
            }
        },
    )
    monkeypatch.setenv("SSH_AUTH_SOCK", ssh_agent["SSH_AUTH_SOCK"])
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* to fall back on: only the agent can help
    env = {**os.environ, **ssh_agent}
    subprocess.run(["ssh-add", "-q", str(rig.client_key)], check=True, env=env, capture_output=True)
    rt = Runtime.create(settings(rig, tmp_path, inventory))
    try:
        assert (await fleet_check(rt, "web03")).summary.ok == 1
    finally:
        await rt.close()
    subprocess.run(["ssh-add", "-D", "-q"], check=True, env=env, capture_output=True)
    rt = Runtime.create(settings(rig, tmp_path, inventory))
    try:
        result = await fleet_check(rt, "web03")
    finally:
        await rt.close()
    assert result.summary.failed == 1 and "authentication failed" in result.errors[0].message
