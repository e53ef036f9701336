"""`crashfleet bootstrap HOST`: the Ansible role's essentials for one host, over Fabric.

User, forced-command key, sudoers rule, agent zipapp, policy and state dir (and on systemd hosts
the slice the agent's cgroups go in), with
the same content the role writes (ansible/roles/crashfleet_agent/templates), so a
bootstrapped host and a deployed one look alike to the controller. No distribution packages:
the host needs python3 and sudo already. Host keys are verified against the
controller's known_hosts (paramiko RejectPolicy); sudo asks for a password only
when `sudo -n` is refused.
"""

from __future__ import annotations

import io
import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import paramiko
from fabric import Config, Connection
from invoke.exceptions import Failure

from crashfleet.agent.dumps.drgn_pick import PINNED as PINNED_DRGN
from crashfleet.agent.dumps.drgn_pick import VENV as DRGN_VENV
from crashfleet.agent.policy import DEFAULTS as POLICY_DEFAULTS
from crashfleet.inventory import Host

from . import deployed
from .bundle import agent_bundle
from .errors import CrashfleetError, HostError, Unreachable
from .settings import Settings

DEFAULT_AGENT_PATH = "/opt/crashfleet/crashfleet-agent.pyz"
DEFAULT_HOME = "/var/lib/crashfleet"
POLICY_PATH = "/etc/crashfleet/agent-policy.json"
# The policy keys the role's template writes too; the others keep the agent's defaults.
POLICY_KEYS = (
    "allow_commands",
    "deny_commands",
    "max_duration",
    "max_output_bytes",
    "max_store_bytes",
    "max_jobs",
    "job_lease",
    "max_captures",
    "capture_total_bytes",
)
SUDOERS_PATH = "/etc/sudoers.d/crashfleet"
SLICE_PATH = "/etc/systemd/system/crashfleet.slice"  # systemd hosts: the agent's delegated scopes go in it
SUPPORTED = ("debian", "rhel", "fedora")  # os-release ID / ID_LIKE words of the role's two families
HEADER = "# Managed by crashfleet bootstrap"
PasswordPrompt = Callable[[str], str]


def _extra_policy(host: Host) -> dict[str, Any]:
    """crashfleet_agent_policy: any other policy key (a domain's), as the role's template merges it."""
    extra = host.vars.get("crashfleet_agent_policy") or {}
    if not isinstance(extra, dict):
        raise CrashfleetError(f"{host.name}: crashfleet_agent_policy must be a mapping of policy keys")
    unknown = sorted(set(extra) - set(POLICY_DEFAULTS))
    if unknown:
        raise CrashfleetError(
            f"{host.name}: crashfleet_agent_policy has unknown keys: {', '.join(unknown)}",
            "known keys: " + ", ".join(sorted(POLICY_DEFAULTS)),
        )
    return dict(extra)


@dataclass(frozen=True)
class Plan:
    """What to install where: the role's variables, read from the same inventory."""

    agent: deployed.Installed
    home: str
    public_key: str
    policy: dict[str, Any]
    drgn_version: str = PINNED_DRGN
    drgn_venv: str = DRGN_VENV
    slice_memory_max: str = "50%"

    @classmethod
    def for_host(cls, host: Host) -> Plan:
        installed = deployed.installed(host) or deployed.installed(
            Host(host.name, {**host.vars, "crashfleet_agent_path": DEFAULT_AGENT_PATH}, host.groups)
        )
        assert installed is not None
        if not installed.key_file:
            raise CrashfleetError(
                f"no controller key for {host.name}",
                "set crashfleet_ssh_private_key_file (its .pub is installed on the host)",
            )
        public = Path(installed.key_file + ".pub")
        if not public.exists():
            raise CrashfleetError(
                f"{public} does not exist", f"create the key pair: ssh-keygen -t ed25519 -f {installed.key_file}"
            )
        policy = {key: host.vars.get(f"crashfleet_{key}", POLICY_DEFAULTS[key]) for key in POLICY_KEYS}
        venv = str(host.vars.get("crashfleet_drgn_venv") or DRGN_VENV)
        policy["drgn_venv"] = venv  # where the agent looks for the drgn installed below
        policy |= _extra_policy(host)
        return cls(
            installed,
            str(host.vars.get("crashfleet_home") or DEFAULT_HOME),
            " ".join(public.read_text().split()[:3]),
            policy,
            str(host.vars.get("crashfleet_drgn_version") or PINNED_DRGN),
            venv,
            str(host.vars.get("crashfleet_slice_memory_max") or "50%"),
        )

    def authorized_keys(self) -> str:
        command = shlex.join(self.agent.argv())
        return (
            f"{HEADER}\n# These keys can only start the crashfleet agent: no shell, pty, forwarding or other "
            f'command.\nrestrict,command="{command}" {self.public_key}\n'
        )

    def sudoers(self) -> str:
        user = self.agent.user
        return (
            f"{HEADER}\n# The crashfleet user may start the agent as root, with exactly these arguments, and "
            f"nothing else.\nDefaults:{user} !requiretty\n{user} ALL=(root) NOPASSWD: "
            f"{shlex.join(self.agent.argv()[2:])}\n"
        )

    def policy_json(self) -> str:
        return json.dumps(self.policy, indent=4, sort_keys=True) + "\n"

    def slice_unit(self) -> str:
        """The role's templates/crashfleet.slice.j2, for systemd hosts."""
        return (
            f"{HEADER}\n# The crashfleet agent asks systemd for a delegated scope in this slice (Delegate=yes) "
            "and gives each\n# of its sandboxed children a cgroup there with its own memory, process and CPU "
            "budget.\n[Unit]\nDescription=crashfleet agents and their sandboxed children\n\n[Slice]\n"
            f"MemoryAccounting=yes\nTasksAccounting=yes\nMemoryMax={self.slice_memory_max}\n"
        )


def bootstrap(host: Host, settings: Settings, ask_password: PasswordPrompt, say: Callable[[str], None] = print) -> None:
    """Install the agent on one host the way ansible/site.yml does (its essentials)."""
    plan = Plan.for_host(host)
    _check_paths(plan)
    with _connect(host, settings) as conn:
        _sudo_ready(conn, host, ask_password)
        _check_distribution(conn, host)
        steps = Steps(conn)
        steps.user(plan)
        for path, mode in (
            (str(PurePosixPath(plan.agent.path).parent), "0755"),
            (plan.home, "0755"),
            (f"{plan.home}/.ssh", "0755"),
            (plan.agent.state_dir, "0700"),
            (str(PurePosixPath(POLICY_PATH).parent), "0755"),
        ):
            steps.sudo("install", "-d", "-o", "root", "-g", "root", "-m", mode, path)
        staging = conn.run("mktemp -d", hide=True).stdout.strip()
        try:
            steps.place(staging, agent_bundle().data, plan.agent.path, "0644")
            steps.place(staging, plan.policy_json().encode(), POLICY_PATH, "0644")
            steps.place(staging, plan.authorized_keys().encode(), f"{plan.home}/.ssh/authorized_keys", "0644")
            steps.place(staging, plan.sudoers().encode(), SUDOERS_PATH, "0440", validate=True)
            if conn.run("test -d /run/systemd/system", hide=True, warn=True).ok:
                steps.place(staging, plan.slice_unit().encode(), SLICE_PATH, "0644")
                steps.sudo("systemctl", "daemon-reload")
        finally:
            conn.run(shlex.join(["rm", "-rf", "--", staging]), hide=True, warn=True)
        drgn = steps.drgn(plan)
        say(
            f"{host.name}: agent {agent_bundle().build} at {plan.agent.path}, user {plan.agent.user}, "
            f"key restricted to the agent, {drgn}; set crashfleet_agent_path for {host.name} in the inventory"
        )


class Steps:
    """Commands as root through Fabric's sudo; every command line is built with shlex."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def sudo(self, *argv: str) -> str:
        try:
            result = self.conn.sudo(shlex.join(argv), hide=True, in_stream=False)
        except Failure as exc:
            raise HostError(
                f"{argv[0]} failed on {self.conn.host}: {exc.result.stderr.strip()[-500:]}", kind="bootstrap"
            ) from None
        return str(result.stdout)

    def user(self, plan: Plan) -> None:
        name = plan.agent.user
        if self.conn.run(shlex.join(["id", "-u", name]), hide=True, warn=True).ok:
            self.sudo("usermod", "--home", plan.home, "--shell", "/bin/sh", "--password", "*", name)
        else:
            self.sudo(
                "useradd",
                "--system",
                "--home-dir",
                plan.home,
                "--no-create-home",
                "--shell",
                "/bin/sh",
                "--password",
                "*",
                "--comment",
                "crashfleet agent (SSH key restricted to starting the agent)",
                name,
            )

    def drgn(self, plan: Plan) -> str:
        """The role's pinned PyPI drgn in its own venv; a host without PyPI or venv keeps its own
        drgn (the agent reports which it uses), so this step says what happened instead of failing."""
        venv = plan.drgn_venv
        try:
            self.sudo(plan.agent.python, "-m", "venv", venv)
            self.sudo(f"{venv}/bin/pip", "install", "-q", "--disable-pip-version-check", f"drgn=={plan.drgn_version}")
        except HostError as exc:
            return f"drgn {plan.drgn_version} NOT installed in {venv} ({exc.message}; python3-venv and PyPI needed)"
        return f"drgn {plan.drgn_version} in {venv}"

    def place(self, staging: str, data: bytes, dest: str, mode: str, validate: bool = False) -> None:
        """Upload to the login user's staging dir, then install as root (atomic rename by install)."""
        tmp = f"{staging}/{PurePosixPath(dest).name}"
        self.conn.put(io.BytesIO(data), tmp)
        if validate:
            self.sudo("visudo", "-cf", tmp)
        self.sudo("install", "-o", "root", "-g", "root", "-m", mode, tmp, dest)


def _connect(host: Host, settings: Settings) -> Connection:
    """A Fabric connection that trusts only known_hosts: unknown keys are refused, never added."""
    kwargs: dict[str, Any] = {"look_for_keys": True, "allow_agent": True}
    if host.key_file:  # the inventory's key only, as ssh -i with IdentitiesOnly would
        kwargs = {"key_filename": [host.key_file], "look_for_keys": False, "allow_agent": False}
    # in_stream=False on every command: our stdin (maybe /dev/null) must not reach sudo -S as an empty password
    conn = Connection(
        host.address,
        user=host.user,
        port=host.port or 22,
        connect_kwargs=kwargs,
        connect_timeout=int(settings.ssh_connect_timeout or settings.host_deadline),
        config=Config(lazy=True, overrides={"run": {"in_stream": False}}),
    )
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    known = settings.ssh_known_hosts_path()
    if known.exists():
        conn.client.get_host_keys().load(str(known))  # not load_host_keys: that would save back to it
    try:
        conn.open()
    except paramiko.SSHException as exc:
        if "not found in known_hosts" in str(exc) or isinstance(exc, paramiko.BadHostKeyException):
            raise HostError(
                f"host key of {host.name} ({host.address}:{host.port or 22}) is not trusted by {known}",
                f"verify the key and add it to {known} (or set CRASHFLEET_SSH_KNOWN_HOSTS)",
                kind="host_key_unknown",
            ) from None
        raise HostError(f"SSH to {host.name} failed: {exc}", "check ansible_user and the key", kind="auth") from None
    except (TimeoutError, OSError) as exc:
        raise Unreachable(f"cannot connect to {host.address}:{host.port or 22}: {exc}", kind="connect") from None
    return conn


def _sudo_ready(conn: Connection, host: Host, ask_password: PasswordPrompt) -> None:
    """Root needs no sudo password; others get asked once, and only when sudo -n is refused."""
    if conn.run("sudo -n true", hide=True, warn=True).ok:
        return
    password = ask_password(f"[sudo] password for {conn.user}@{host.name}: ")
    conn.config.sudo.password = password
    try:
        conn.sudo("true", hide=True, in_stream=False)
    except Failure:
        raise HostError(
            f"sudo refused {conn.user} on {host.name} (wrong password, or not in sudoers)",
            "bootstrap needs a user that may run commands as root",
            kind="sudo",
        ) from None


def _check_distribution(conn: Connection, host: Host) -> None:
    release = dict(
        line.split("=", 1)
        for line in conn.run("cat /etc/os-release", hide=True, warn=True).stdout.splitlines()
        if "=" in line
    )
    words = {word.strip('"') for key in ("ID", "ID_LIKE") for word in release.get(key, "").strip('"').split()}
    if not words & set(SUPPORTED):
        name = (release.get("PRETTY_NAME") or release.get("ID") or "an unknown system").strip('"')
        raise HostError(
            f"{host.name} runs {name}: bootstrap supports the Debian and RedHat families", kind="unsupported"
        )


def _check_paths(plan: Plan) -> None:
    for value in (plan.agent.path, plan.agent.python, plan.agent.state_dir, plan.home):
        if not re.fullmatch(r"/[A-Za-z0-9._/-]+", value):
            raise CrashfleetError(
                f"{value!r} must be an absolute path of letters, digits and ._/- only",
                "it goes into sudoers and a forced command",
            )
