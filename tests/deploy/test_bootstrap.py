"""`crashfleet bootstrap HOST` (Fabric) on an isolated rig host: same result as the role's essentials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crashfleet.agent.dumps import drgn_pick
from crashfleet.controller.bootstrap import bootstrap
from crashfleet.controller.errors import HostError
from crashfleet.controller.runtime import Runtime
from crashfleet.controller.tools.fleet import fleet_check
from crashfleet.inventory import Host, load_inventory
from tests.rig.namespace import upper

from .conftest import AGENT, Deployment

pytestmark = pytest.mark.ssh
PASSWORD = "s3cret-sudo"


def host(deployment: Deployment, name: str, **overrides: Any) -> Host:
    h = load_inventory(deployment.inventory).hosts[name]
    return Host(name, {**h.vars, **overrides}, h.groups)


def rules(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


class Prompt:
    def __init__(self, answer: str) -> None:
        self.answer, self.asked = answer, []

    def __call__(self, prompt: str) -> str:
        self.asked.append(prompt)
        return self.answer


def test_an_unknown_host_key_is_refused_before_anything_happens(deployment: Deployment, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    settings = deployment.settings(tmp_path).model_copy(update={"ssh_known_hosts": empty})
    with pytest.raises(HostError) as refused:
        bootstrap(host(deployment, "dep04"), settings, Prompt(PASSWORD), say=lambda _: None)
    assert refused.value.kind == "host_key_unknown" and str(empty) in str(refused.value)
    assert "crashfleet:" not in deployment.root("dep04", "cat /etc/passwd").stdout


async def test_bootstrap_with_a_sudo_password_gives_what_the_role_gives(deployment: Deployment, tmp_path: Path) -> None:
    deployment.root(
        "dep04",
        f"id ops || (useradd -m -s /bin/sh ops && echo ops:{PASSWORD} | chpasswd && "
        "echo 'ops ALL=(ALL) ALL' > /etc/sudoers.d/ops && chmod 0440 /etc/sudoers.d/ops)",
    )
    settings = deployment.settings(tmp_path)
    wrong = Prompt("not-the-password")
    with pytest.raises(HostError) as refused:
        bootstrap(host(deployment, "dep04", ansible_user="ops"), settings, wrong, say=lambda _: None)
    assert refused.value.kind == "sudo" and len(wrong.asked) == 1, str(refused.value)
    assert not upper(deployment.rig.host("dep04").ns_dir, AGENT).exists()

    prompt, said = Prompt(PASSWORD), []
    bootstrap(host(deployment, "dep04", ansible_user="ops"), settings, prompt, say=said.append)
    assert prompt.asked == ["[sudo] password for ops@dep04: "] and "dep04: agent " in said[0]

    ours, role = deployment.rig.host("dep04").ns_dir, deployment.rig.host("dep01").ns_dir
    for path in ("/etc/sudoers.d/crashfleet", "/var/lib/crashfleet/.ssh/authorized_keys"):
        assert rules(upper(ours, path)) == rules(upper(role, path)), path
    policy = "/etc/crashfleet/agent-policy.json"
    assert json.loads(upper(ours, policy).read_text()) == json.loads(upper(role, policy).read_text())
    assert upper(ours, AGENT).read_bytes() == deployment.zipapp.read_bytes()
    assert f"drgn {drgn_pick.PINNED} in {drgn_pick.VENV}" in said[0], said  # as the role: PyPI drgn, pinned
    drgn = deployment.root("dep04", f"{drgn_pick.VENV}/bin/python3 -c 'import drgn; print(drgn.__version__)'")
    assert drgn.stdout.strip() == drgn_pick.PINNED

    again = Prompt(PASSWORD)  # as root: no password asked, same result
    bootstrap(host(deployment, "dep04"), settings, again, say=lambda _: None)
    assert again.asked == []

    rt = Runtime.create(settings, who="pytest")
    try:
        result = await fleet_check(rt, "dep04")
    finally:
        await rt.close()
    assert result.summary.ok == 1, result.errors
    assert result.groups[0].data["agent"]["installed"] == AGENT and result.groups[0].data["uid"] == 0


def test_an_unsupported_distribution_is_named(deployment: Deployment, tmp_path: Path) -> None:
    deployment.root(
        "dep04",
        "mv /etc/os-release /etc/os-release.real && "
        "printf 'ID=alpine\\nPRETTY_NAME=\"Alpine Linux v3.20\"\\n' > /etc/os-release",
    )
    try:
        with pytest.raises(HostError) as refused:
            bootstrap(host(deployment, "dep04"), deployment.settings(tmp_path), Prompt(""), say=lambda _: None)
    finally:
        deployment.root("dep04", "rm -f /etc/os-release && mv /etc/os-release.real /etc/os-release")
    assert "dep04 runs Alpine Linux v3.20" in str(refused.value)
