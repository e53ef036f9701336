"""First contact: start the host's agent, pushing our build when it lacks it.

Pushed hosts get one exec: the agent's launcher (agent/launcher.py; as root through
`sudo -n` with ansible_become) checks the agent dir, runs the zipapp there only if its
sha256 is ours, and otherwise asks for it over the same channel's stdin first. A host
deployed by ansible/ (`crashfleet_agent_path` set) is never pushed to: its installed
agent is started and a build mismatch is reported (controller.deployed).
"""

from __future__ import annotations

import functools
import os
import re
import sys
from pathlib import Path
from typing import Any

from crashfleet.agent import PROTOCOL_VERSION, launcher, protocol
from crashfleet.inventory import Host

from . import deployed, stages
from .bundle import Bundle, agent_bundle
from .errors import HostError, LinkClosed
from .identity import Identity
from .link import AgentLink
from .settings import Settings
from .transport import AgentProcess, LocalTransport, SshTransport, Transport


async def open_link(host: Host, settings: Settings, identity: Identity) -> AgentLink:
    """Connect, start the agent (uploading it once if missing or different), say hello as
    `identity` (an agent of this controller and this inventory name that kept its jobs reattaches)."""
    installed = deployed.installed(host)
    login = deployed.login_host(host, installed) if installed else host
    transport: Transport = (
        LocalTransport() if host.connection == "local" else await SshTransport.connect(login, settings)
    )
    try:
        if installed:
            return await _start_installed(host, transport, installed, settings, identity)
        return await _start(host, transport, agent_bundle(), identity)
    except BaseException:
        await transport.close()
        raise


async def _start(host: Host, transport: Transport, bundle: Bundle, identity: Identity) -> AgentLink:
    stages.mark("agent start")
    process = await transport.start(agent_argv(host, remote_dir(host), bundle))
    try:  # no limit of its own: the host's deadline bounds every stage (controller.stages)
        await _launch(host, process, bundle)
        stages.mark("hello")
        link = AgentLink(host.name, process, transport)
        link.hello = await link.call(protocol.HELLO, hello_params(identity, host))
    except LinkClosed as exc:
        raise _start_error(host, exc) from None
    except BaseException:
        process.close()  # a launcher or agent that hangs sees EOF and exits
        raise
    if link.hello.get("build") != bundle.build:  # the launcher checked the file's hash: a bug if so
        await _close_agent(link)
        raise HostError(
            f"agent on {host.name} reports build {link.hello.get('build')}, expected {bundle.build}",
            kind="build_mismatch",
        )
    _check_protocol(host, link.hello)
    return link


async def _launch(host: Host, process: AgentProcess, bundle: Bundle) -> None:
    """The launcher's side of first contact: its source, then the zipapp if it asks, until it says ok."""
    try:
        await process.write(launcher_source())
        line = await _launcher_line(process)
        if line == launcher.NEED:
            stages.mark("agent upload")
            await process.write(bundle.data)
            stages.mark("agent start")
            line = await _launcher_line(process)
    except (OSError, ConnectionError):
        line = b""
    if line != launcher.OK:
        status = await process.finish(timeout=2.0)
        raise LinkClosed(
            f"the agent on {host.name} did not start (exit status {status})",
            stderr_tail=process.stderr_text()[-2000:] or None,
            exit_status=status,
        )


async def _launcher_line(process: AgentProcess, noise: int = 64) -> bytes:
    """The launcher's next word, past what a login shell may print first (b"" at EOF)."""
    for _ in range(noise):
        line = await process.readline()
        if not line or line.startswith(launcher.SAYS):
            return line
    return b""


async def _start_installed(
    host: Host, transport: Transport, installed: deployed.Installed, settings: Settings, identity: Identity
) -> AgentLink:
    stages.mark("agent start")
    link = AgentLink(host.name, await transport.start(installed.argv()), transport)
    try:
        stages.mark("hello")
        link.hello = await link.call(protocol.HELLO, hello_params(identity, host))
    except LinkClosed as exc:
        raise deployed.start_error(host, installed, exc, settings.inventory) from None
    expected = agent_bundle().build
    if link.hello.get("build") != expected:
        await _close_agent(link)
        raise deployed.outdated(host, installed, link.hello.get("build"), expected, settings.inventory)
    _check_protocol(host, link.hello)
    link.hello["installed"] = installed.path  # shown by fleet_check: this host's agent was deployed, not pushed
    return link


def hello_params(identity: Identity, host: Host) -> dict[str, Any]:
    """Who we are, to this inventory name: an agent we lost the link to while its jobs ran lets
    us reattach (agent/lease.py); no other controller, and no other name of the machine, can."""
    return {"controller": identity.host_key(host.name)}


def agent_argv(host: Host, directory: str, bundle: Bundle) -> list[str]:
    """The launcher's command line (short: sudo logs it); its source follows on stdin."""
    python = sys.executable if host.connection == "local" and host.python == "python3" else host.python
    argv = [
        python,
        "-I",
        "-c",
        launcher.STAGE1,
        str(len(launcher_source())),
        directory,
        bundle.filename,
        bundle.sha256,
        str(len(bundle.data)),
    ]
    return ["sudo", "-n", "--", *argv] if host.become else argv


@functools.cache
def launcher_source() -> bytes:
    return Path(launcher.__file__).read_bytes()


def remote_dir(host: Host) -> str:
    """The agent dir as the launcher gets it: `~` is the home of the user the agent runs as
    (root's with ansible_become); on the local host without become, the controller's $HOME."""
    directory = host.agent_dir.rstrip("/") or "/"
    if host.connection == "local" and not host.become:
        return os.path.expanduser(directory)
    return directory


def _start_error(host: Host, exc: LinkClosed) -> HostError:
    tail = exc.stderr_tail or ""
    if host.become and re.search(r"sudo: (command )?not found", tail):
        return HostError(
            f"{host.name} has no sudo, and ansible_become is set",
            "install sudo or unset ansible_become",
            kind="sudo",
            stderr_tail=tail,
            exit_status=exc.exit_status,
        )
    if (exc.exit_status == 127 or "command not found" in tail) and "can't open file" not in tail:
        return HostError(
            f"{host.name} has no {host.python}: the agent needs Python >= 3.8 there",
            "install python3 on the host, or set ansible_python_interpreter to its path",
            kind="no_python",
            stderr_tail=tail,
            exit_status=exc.exit_status,
        )
    if "sudo" in tail and ("password" in tail or "not allowed" in tail or "not in the sudoers" in tail):
        return HostError(
            f"sudo -n refused on {host.name} (ansible_become is set)",
            "allow the agent command in sudoers without a password, or unset ansible_become",
            kind="sudo",
            stderr_tail=tail,
            exit_status=exc.exit_status,
        )
    if exc.exit_status == launcher.OLD_PYTHON:
        return HostError(
            f"{host.name}'s {host.python} is too old for the agent",
            tail or None,
            kind="old_python",
            stderr_tail=tail,
            exit_status=3,
        )
    said = re.findall(r"crashfleet-launcher: (.*)", tail)
    if exc.exit_status == launcher.UNSAFE_DIR and said:
        return HostError(
            f"{host.name}: {said[-1]}",
            _unsafe_dir_hint(host),
            kind="unsafe_agent_dir",
            stderr_tail=tail,
            exit_status=exc.exit_status,
            rule="agent.dir",
        )
    if exc.exit_status == launcher.BAD_UPLOAD:
        return HostError(
            f"{host.name}: {said[-1] if said else 'the zipapp did not arrive whole'}",
            "retry; if it persists, check the host's disk",
            kind="bad_upload",
            stderr_tail=tail,
            exit_status=exc.exit_status,
        )
    return HostError(
        f"the agent on {host.name} did not start: {exc.message}",
        exc.hint,
        kind="agent_start",
        stderr_tail=tail,
        exit_status=exc.exit_status,
    )


def _unsafe_dir_hint(host: Host) -> str:
    who = "root (ansible_become is set)" if host.become else "the login user"
    return (
        f"the agent runs as {who}: only root and that user may write its dir and the dirs above it. "
        "Unset crashfleet_agent_dir (the default ~/.cache/crashfleet is in the home of the user the agent "
        "runs as), or fix the dir: chown root:root DIR && chmod go-w DIR"
    )


def _check_protocol(host: Host, hello: protocol.Hello) -> None:
    if hello.get("protocol") != PROTOCOL_VERSION:
        raise HostError(
            f"agent on {host.name} speaks protocol {hello.get('protocol')}, controller speaks {PROTOCOL_VERSION}",
            kind="protocol",
        )


async def _close_agent(link: AgentLink) -> None:
    link.process.close()
    await link.process.finish()
