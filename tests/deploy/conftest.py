"""A deployment rig: isolated sshd hosts (own mount namespace, overlays) that ansible/ deploys to.

dep01, dep02: deployed by the session fixture (two playbook runs).
dep03: bad input (unsupported distribution, missing zipapp, partial failure), then deployed.
dep04: left to `crashfleet bootstrap`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from crashfleet.controller.bundle import write_bundle
from crashfleet.controller.settings import Settings
from tests.rig import Rig, environment_problem, free_port
from tests.rig.files import keygen, pub

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_BIN = Path(sys.executable).parent  # the venv's ansible-playbook / ansible-lint
AGENT = "/opt/crashfleet/crashfleet-agent.pyz"
MACHINE_FILES = (
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/fstab",
    "/etc/os-release",
    "/etc/sudoers",
    "/etc/sudoers.d/crashfleet",
    "/etc/crashfleet/agent-policy.json",
    AGENT,
)
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@dataclass
class Deployment:
    rig: Rig
    base: Path
    inventory: Path
    controller_key: Path
    zipapp: Path
    runs: list[subprocess.CompletedProcess[str]]
    machine_before: dict[str, str]

    def env(self) -> dict[str, str]:
        ssh_args = (
            f"-o UserKnownHostsFile={self.rig.known_hosts} -o GlobalKnownHostsFile=/dev/null "
            "-o StrictHostKeyChecking=yes -o ControlMaster=auto -o ControlPersist=30s"
        )
        return {
            **os.environ,
            "ANSIBLE_HOME": str(self.base / "ansible-home"),
            "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_LOCAL_TEMP": str(self.base / "ansible-tmp"),
            "ANSIBLE_FORKS": "10",
            "ANSIBLE_SSH_ARGS": ssh_args,
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.base / "cp"),
            "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{ANSIBLE_BIN}:{os.environ['PATH']}",
        }

    def playbook(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(ANSIBLE_BIN / "ansible-playbook"), "-i", str(self.inventory), "ansible/site.yml", *args]
        return subprocess.run(argv, cwd=REPO, env=self.env(), capture_output=True, text=True, timeout=600)

    def root(self, host: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A shell command as root on a rig host (inside its namespace), over the rig key."""
        h = self.rig.host(host)
        argv = [
            "ssh",
            *ssh_options(self.rig),
            "-i",
            str(self.rig.client_key),
            "-p",
            str(h.port),
            f"root@{h.address}",
            command,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if check:
            assert done.returncode == 0, f"{command}: {done.stderr}"
        return done

    def settings(self, tmp_path: Path) -> Settings:
        return Settings(
            inventory=self.inventory,
            ssh_known_hosts=self.rig.known_hosts,
            audit_log=tmp_path / "audit.jsonl",
            host_deadline=30,
        )


def snapshot() -> dict[str, str]:
    """This machine's own files a deployment would change if it escaped its namespace."""
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "-"
        for path in map(Path, MACHINE_FILES)
    }


def ssh_options(rig: Rig) -> list[str]:
    return [
        "-F",
        "/dev/null",
        "-o",
        f"UserKnownHostsFile={rig.known_hosts}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=5",
    ]


def recap(run: subprocess.CompletedProcess[str]) -> dict[str, dict[str, int]]:
    """PLAY RECAP per host: {'dep01': {'ok': 20, 'changed': 13, 'unreachable': 0, 'failed': 0}}."""
    return {
        m[0]: dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m[1:]))) for m in RECAP.findall(run.stdout)
    }


def write_inventory(rig: Rig, path: Path, key: Path, zipapp: Path) -> None:
    """The one inventory: Ansible logs in as root with the rig key; crashfleet as `crashfleet` with its own."""
    doc = yaml.safe_load(rig.inventory.read_text())
    for entry in doc["all"]["children"][rig.prefix]["hosts"].values():
        entry.pop("crashfleet_agent_dir")  # the push cache dir: not used by deployed hosts
    doc["all"]["vars"] = {
        "ansible_python_interpreter": "/usr/bin/python3",  # not a pyenv shim found on PATH
        "crashfleet_agent_path": AGENT,
        "crashfleet_ssh_private_key_file": str(key),
        "crashfleet_zipapp_src": str(zipapp),
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.fixture(scope="session")
def deployment() -> Iterator[Deployment]:
    """dep01-dep04 up; dep01 and dep02 deployed by ansible-playbook, twice."""
    problem = environment_problem()
    if problem:
        pytest.fail(f"the sshd rig cannot run here: {problem}")
    # Not under pytest's 0700 tmp dir: sshd reads the rig's authorized_keys as the login user (ops).
    base = Path(tempfile.mkdtemp(prefix="crashfleet-deploy-"))
    base.chmod(0o755)
    try:
        yield from _deploy(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _deploy(base: Path) -> Iterator[Deployment]:
    with Rig(base / "rig", 4, port=free_port(4), prefix="dep", isolated=True) as rig:
        key = base / "controller_ed25519"
        keygen([(key, "crashfleet-controller")])
        assert pub(key).exists()
        zipapp = base / "crashfleet-agent.pyz"
        write_bundle(zipapp)
        inventory = base / "inventory.yml"
        write_inventory(rig, inventory, key, zipapp)
        dep = Deployment(rig, base, inventory, key, zipapp, [], snapshot())
        dep.runs = [dep.playbook("--limit", "dep01,dep02") for _ in range(2)]
        yield dep


@pytest.fixture
async def deployed_runtime(deployment: Deployment, tmp_path: Path) -> AsyncIterator[Any]:
    from crashfleet.controller.runtime import Runtime

    rt = Runtime.create(deployment.settings(tmp_path), who="pytest")
    yield rt
    await rt.close()
