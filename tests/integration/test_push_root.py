"""Pushing the agent as a non-root login user with ansible_become: root never runs what that user could write.

One isolated rig host (own /etc, /home and /root: tests.rig.namespace) with a login user `ops`
who may `sudo -n` anything, as a push-mode admin account would. Every planted file is a
zipapp of exactly the real one's size that, if run, writes a canary file: the canary must
never appear.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from crashfleet.controller.bundle import agent_bundle
from crashfleet.controller.runtime import Runtime
from crashfleet.controller.settings import Settings
from crashfleet.controller.tools.fleet import fleet_check
from tests.conftest import wait_no_agents
from tests.rig import Rig, free_port

USER_DIR = "/home/ops/.cache/crashfleet"  # the login user's own cache: the old place root ran the agent from
ROOT_DIR = "/root/.cache/crashfleet"  # where the launcher puts it under sudo (~ is root's home)


@pytest.fixture(scope="module")
def ops_rig() -> Iterator[Rig]:
    # Not under pytest's 0700 tmp dir: sshd reads the rig's authorized_keys as ops.
    base = Path(tempfile.mkdtemp(prefix="crashfleet-push-root-"))
    base.chmod(0o755)
    try:
        (base / "canaries").mkdir(mode=0o1777)
        (base / "canaries").chmod(0o1777)  # any user's planted code could write its canary here
        with Rig(base, 1, port=free_port(1), prefix="pr", isolated=True) as rig:
            # No password, yet not locked ('*', not useradd's '!'): sshd without PAM refuses locked accounts.
            as_root(
                rig,
                "useradd -m -s /bin/sh -p '*' ops && echo 'ops ALL=(ALL) NOPASSWD: ALL' > "
                "/etc/sudoers.d/ops && chmod 0440 /etc/sudoers.d/ops",
            )
            yield rig
    finally:
        shutil.rmtree(base, ignore_errors=True)


def as_root(rig: Rig, command: str, data: bytes | None = None) -> str:
    """A shell command as root inside the host's namespace."""
    h = rig.hosts[0]
    argv = [
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        f"UserKnownHostsFile={rig.known_hosts}",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-i",
        str(rig.client_key),
        "-p",
        str(h.port),
        f"root@{h.address}",
        command,
    ]
    done = subprocess.run(argv, input=data, capture_output=True, timeout=60)
    assert done.returncode == 0, f"{command}: {done.stderr!r}"
    return done.stdout.decode()


def settings(rig: Rig, tmp_path: Path, **host_vars: Any) -> Settings:
    doc = yaml.safe_load(rig.inventory.read_text())
    entry = doc["all"]["children"]["pr"]["hosts"]["pr01"]
    entry.pop("crashfleet_agent_dir")
    entry.update({"ansible_user": "ops", "ansible_python_interpreter": "/usr/bin/python3", **host_vars})
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump(doc))
    return Settings(
        inventory=inventory, ssh_known_hosts=rig.known_hosts, audit_log=tmp_path / "audit.jsonl", host_deadline=30
    )


async def check(rig: Rig, tmp_path: Path, **host_vars: Any) -> Any:
    rt = Runtime.create(settings(rig, tmp_path, **host_vars), who="pytest")
    try:
        return await fleet_check(rt, "pr01")
    finally:
        await rt.close()
        await wait_no_agents(rig.base)


def canary_zipapp(canary: Path) -> bytes:
    """A zipapp the size of the real agent that writes `canary` however it is started."""
    code = f"import os\nopen({str(canary)!r}, 'w').write('ran as uid %d' % os.geteuid())\n"
    members = {
        "__main__.py": code,
        "crashfleet/__init__.py": "",
        "crashfleet/agent/__init__.py": "",
        "crashfleet/agent/main.py": code + "def main(argv=None):\n    return 0\n",
    }

    def build(prefix: bytes) -> bytes:
        buffer = io.BytesIO()
        buffer.write(prefix)
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, text in members.items():
                archive.writestr(name, text)
        return buffer.getvalue()

    size = len(agent_bundle().data)
    data = build(b"#!/usr/bin/env python3\n" + b"#" * (size - len(build(b"")) - 24) + b"\n")
    assert len(data) == size
    return data


def plant(rig: Rig, path: str, data: bytes, owner: str) -> None:
    directory = path.rsplit("/", 1)[0]
    as_root(
        rig,
        f"install -d -o {owner} -g {owner} -m 0755 {directory} && cat > {path} && "
        f"chown {owner}: {path} && chmod 0755 {path}",
        data,
    )


def sha256_on_host(rig: Rig, path: str) -> str:
    return as_root(rig, f"sha256sum {path}").split()[0]


async def test_with_become_root_runs_its_own_copy_never_the_login_users(ops_rig: Rig, tmp_path: Path) -> None:
    name = agent_bundle().filename
    canary = ops_rig.base / "canaries" / "user-copy"
    plant(ops_rig, f"{USER_DIR}/{name}", canary_zipapp(canary), "ops")
    result = await check(ops_rig, tmp_path, ansible_become=True)
    assert result.summary.ok == 1, result.errors
    assert result.groups[0].data and result.groups[0].data["uid"] == 0
    assert not canary.exists()
    assert sha256_on_host(ops_rig, f"{ROOT_DIR}/{name}") == agent_bundle().sha256
    assert as_root(ops_rig, f"stat -c '%u %a' {ROOT_DIR} {ROOT_DIR}/{name}").split() == ["0", "700", "0", "600"]

    result = await check(ops_rig, tmp_path)  # without become: the agent is ops's own, in ops's dir
    assert result.summary.ok == 1, result.errors
    assert result.groups[0].data and result.groups[0].data["uid"] != 0
    assert not canary.exists()  # replaced by hash, not run
    assert sha256_on_host(ops_rig, f"{USER_DIR}/{name}") == agent_bundle().sha256


async def test_a_dir_the_login_user_can_write_is_refused(ops_rig: Rig, tmp_path: Path) -> None:
    canary = ops_rig.base / "canaries" / "user-dir"
    plant(ops_rig, f"{USER_DIR}/{agent_bundle().filename}", canary_zipapp(canary), "ops")
    result = await check(ops_rig, tmp_path, ansible_become=True, crashfleet_agent_dir=USER_DIR)
    assert result.summary.failed == 1
    [error] = result.errors
    assert f"refusing agent dir {USER_DIR}: /home/ops is owned by ops" in (error.message or ""), error
    assert "chown root:root" in (error.hint or "") and "crashfleet_agent_dir" in (error.hint or "")
    assert not canary.exists()
    [entry] = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert (entry["method"], entry["kind"], entry["rule"]) == ("connect", "unsafe_agent_dir", "agent.dir")


async def test_a_swapped_zipapp_of_the_same_size_is_replaced_not_run(ops_rig: Rig, tmp_path: Path) -> None:
    name = agent_bundle().filename
    assert (await check(ops_rig, tmp_path, ansible_become=True)).summary.ok == 1
    canary = ops_rig.base / "canaries" / "swapped"
    plant(ops_rig, f"{ROOT_DIR}/{name}", canary_zipapp(canary), "root")  # right owner, right size, other bytes
    assert sha256_on_host(ops_rig, f"{ROOT_DIR}/{name}") != agent_bundle().sha256
    result = await check(ops_rig, tmp_path, ansible_become=True)
    assert result.summary.ok == 1, result.errors
    assert not canary.exists()
    assert sha256_on_host(ops_rig, f"{ROOT_DIR}/{name}") == agent_bundle().sha256
