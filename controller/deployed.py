"""Hosts whose agent was installed by ansible/ (or `crashfleet bootstrap`): start it, never push.

A host says so with `crashfleet_agent_path` in the inventory Ansible deployed
from. The controller then logs in as the deployed user (`crashfleet_user`) with
the controller's key (`crashfleet_ssh_private_key_file`) and asks for the one
command that user may run: `sudo -n PYTHON AGENT serve --dir STATE_DIR`. With
the role's forced-command key sshd runs exactly that whatever we ask; without
one, sudoers allows exactly that. The defaults below are the role's defaults
(ansible/roles/crashfleet_agent/defaults/main.yml; a test keeps them equal).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from crashfleet.inventory import Host

from .errors import HostError, LinkClosed

DEFAULT_USER = "crashfleet"
DEFAULT_PYTHON = "/usr/bin/python3"
DEFAULT_STATE_DIR = "/var/lib/crashfleet/agent"
PLAYBOOK = "ansible/site.yml"


@dataclass(frozen=True)
class Installed:
    """Where and how the deployed agent runs on one host."""

    path: str
    python: str
    state_dir: str
    user: str
    key_file: str | None

    def argv(self) -> list[str]:
        """The forced command of the deployed key, and the one sudoers rule: byte for byte."""
        return ["sudo", "-n", self.python, self.path, "serve", "--dir", self.state_dir]


def installed(host: Host) -> Installed | None:
    """The deployed agent of a host, or None when the controller should push its own."""
    path = host.vars.get("crashfleet_agent_path")
    if not path or host.connection == "local":
        return None
    key = host.vars.get("crashfleet_ssh_private_key_file")
    return Installed(
        path=str(path),
        python=str(host.vars.get("crashfleet_python") or DEFAULT_PYTHON),
        state_dir=str(host.vars.get("crashfleet_state_dir") or DEFAULT_STATE_DIR),
        user=str(host.vars.get("crashfleet_user") or DEFAULT_USER),
        key_file=str(Path(str(key)).expanduser()) if key else host.key_file,
    )


def login_host(host: Host, agent: Installed) -> Host:
    """The host as the controller logs in to it: the deployed user and key, not Ansible's admin."""
    login = {"ansible_user": agent.user, "ansible_ssh_user": agent.user}
    if agent.key_file:
        login |= {"ansible_private_key_file": agent.key_file, "ansible_ssh_private_key_file": agent.key_file}
    return Host(host.name, {**host.vars, **login}, host.groups)


def fix_command(host: Host, inventory: Path | None) -> str:
    """The command that (re)deploys this host's agent."""
    return (
        f"crashfleet agent build -o crashfleet-agent.pyz && ansible-playbook -i {inventory or 'INVENTORY'} "
        f"{PLAYBOOK} --limit {host.name}"
    )


def outdated(host: Host, agent: Installed, build: object, expected: str, inventory: Path | None) -> HostError:
    return HostError(
        f"the agent installed on {host.name} ({agent.path}) is build {build}, this controller's is {expected}",
        f"update it: {fix_command(host, inventory)}",
        kind="agent_outdated",
    )


def start_error(host: Host, agent: Installed, exc: LinkClosed, inventory: Path | None) -> HostError:
    """Why the deployed agent did not answer, with the redeploy command where that fixes it."""
    tail = exc.stderr_tail or ""
    fix = f"deploy it: {fix_command(host, inventory)}"
    if re.search(r"can't open file|No such file", tail):
        message = f"no agent at {agent.path} on {host.name} (crashfleet_agent_path)"
    elif "sudo" in tail and re.search(r"password|not allowed|not in the sudoers", tail):
        message = (
            f"sudo refused the agent command for {agent.user} on {host.name}: the sudoers rule is missing or differs"
        )
    elif exc.exit_status == 127 or "command not found" in tail:
        message = f"{host.name} has no {agent.python} or no sudo (crashfleet_python)"
    else:
        return HostError(
            f"the installed agent on {host.name} did not start: {exc.message}",
            exc.hint or fix,
            kind="agent_start",
            stderr_tail=tail,
            exit_status=exc.exit_status,
        )
    return HostError(message, fix, kind="agent_missing", stderr_tail=tail, exit_status=exc.exit_status)
