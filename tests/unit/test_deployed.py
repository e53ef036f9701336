"""controller.deployed: the controller and the Ansible role agree on names, paths and the command."""

from __future__ import annotations

from pathlib import Path

import yaml

from crashfleet.controller import bootstrap, deployed
from crashfleet.inventory import Host

ROLE = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "crashfleet_agent"


def test_controller_defaults_are_the_role_defaults() -> None:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    assert defaults["crashfleet_user"] == deployed.DEFAULT_USER
    assert defaults["crashfleet_python"] == deployed.DEFAULT_PYTHON
    assert defaults["crashfleet_state_dir"] == deployed.DEFAULT_STATE_DIR
    assert defaults["crashfleet_agent_path"] == bootstrap.DEFAULT_AGENT_PATH
    assert defaults["crashfleet_home"] == bootstrap.DEFAULT_HOME
    assert defaults["crashfleet_policy_path"] == bootstrap.POLICY_PATH
    for key in bootstrap.POLICY_KEYS:  # the role's policy is the agent's default policy unless told otherwise
        assert defaults[f"crashfleet_{key}"] == bootstrap.POLICY_DEFAULTS[key], key


def test_a_host_without_agent_path_is_pushed_to() -> None:
    assert deployed.installed(Host("web01", {"ansible_user": "ops"})) is None
    assert deployed.installed(Host("localhost", {"crashfleet_agent_path": "/x", "ansible_connection": "local"})) is None


def test_a_deployed_host_logs_in_as_the_deployed_user_and_asks_for_the_forced_command() -> None:
    host = Host(
        "web01",
        {
            "ansible_user": "ops",
            "ansible_ssh_user": "old",
            "ansible_ssh_private_key_file": "/k/admin",
            "crashfleet_agent_path": "/opt/cf/agent.pyz",
            "crashfleet_ssh_private_key_file": "/k/cf",
        },
    )
    agent = deployed.installed(host)
    assert agent is not None
    assert agent.argv() == [
        "sudo",
        "-n",
        "/usr/bin/python3",
        "/opt/cf/agent.pyz",
        "serve",
        "--dir",
        "/var/lib/crashfleet/agent",
    ]
    login = deployed.login_host(host, agent)
    assert (login.user, login.key_file, login.address) == ("crashfleet", "/k/cf", "web01")
    assert host.user == "old"  # the inventory's host is left as it was


def test_the_fix_command_names_the_inventory_and_the_host() -> None:
    assert deployed.fix_command(Host("db02", {}), Path("/srv/inv.yml")).endswith(
        "ansible-playbook -i /srv/inv.yml ansible/site.yml --limit db02"
    )


def test_bootstrap_writes_the_roles_slice_unit_and_the_agent_names_it() -> None:
    """systemd hosts: the role's crashfleet.slice and bootstrap's are the same unit, with the same
    default MemoryMax, and it is the slice the agent asks its delegated scope in."""
    import jinja2

    from crashfleet.agent import cgroups

    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    template = jinja2.Template((ROLE / "templates" / "crashfleet.slice.j2").read_text())
    role = template.render(ansible_managed="managed", **defaults)
    plan = bootstrap.Plan(deployed.Installed("/a", "/p", "/s", "u", None), "/h", "ssh-ed25519 AAAA", {})
    assert plan.slice_memory_max == defaults["crashfleet_slice_memory_max"]

    def unit(text: str) -> list[str]:
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    assert unit(plan.slice_unit()) == unit(role)
    assert bootstrap.SLICE_PATH.endswith("/" + cgroups.SLICE)
    assert cgroups.SLICE in cgroups.scope_argv(1234) and "Delegate" in cgroups.scope_argv(1234)
