"""First contact: start the host's agent, pushing our build when it lacks it.

A host deployed by ansible/ (`crashfleet_agent_path` set) is never pushed to:
its installed agent is started and a build mismatch is reported (controller.deployed).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from typing import Any

from crashfleet.agent import PROTOCOL_VERSION
from crashfleet.inventory import Host

from . import deployed
from .bundle import Bundle, agent_bundle
from .errors import HostError, LinkClosed
from .link import AgentLink
from .settings import Settings
from .transport import LocalTransport, SshTransport, Transport

HELLO_TIMEOUT = 20.0
HOST_PROBLEMS = ("no_python", "sudo", "old_python")  # pushing the agent again would not help


async def open_link(host: Host, settings: Settings) -> AgentLink:
    """Connect, start the agent (uploading it once if missing or different), say hello."""
    installed = deployed.installed(host)
    login = deployed.login_host(host, installed) if installed else host
    transport: Transport = LocalTransport() if host.connection == "local" else \
        await SshTransport.connect(login, settings)
    try:
        if installed:
            return await _start_installed(host, transport, installed, settings)
        return await _start(host, transport, agent_bundle())
    except BaseException:
        await transport.close()
        raise


async def _start(host: Host, transport: Transport, bundle: Bundle) -> AgentLink:
    directory = remote_dir(host)
    await transport.ensure(bundle.data, directory, bundle.filename)
    for attempt in (1, 2):
        link = AgentLink(host.name, await transport.start(agent_argv(host, directory, bundle)), transport)
        try:
            link.hello = await asyncio.wait_for(link.call("hello"), HELLO_TIMEOUT)
        except LinkClosed as exc:
            error = _start_error(host, exc)
            if attempt == 1 and error.kind not in HOST_PROBLEMS:  # a damaged copy: push ours again
                await transport.put(bundle.data, directory, bundle.filename)
                continue
            raise error from None
        if link.hello.get("build") == bundle.build:
            _check_protocol(host, link.hello)
            return link
        await _close_agent(link)
        if attempt == 1:  # same name, other content: a damaged copy; replace it
            await transport.put(bundle.data, directory, bundle.filename)
    raise HostError(f"agent on {host.name} reports build {link.hello.get('build')}, expected {bundle.build}",
                    "remove the host's agent dir and retry", kind="build_mismatch")


async def _start_installed(host: Host, transport: Transport, installed: deployed.Installed,
                           settings: Settings) -> AgentLink:
    link = AgentLink(host.name, await transport.start(installed.argv()), transport)
    try:
        link.hello = await asyncio.wait_for(link.call("hello"), HELLO_TIMEOUT)
    except LinkClosed as exc:
        raise deployed.start_error(host, installed, exc, settings.inventory) from None
    expected = agent_bundle().build
    if link.hello.get("build") != expected:
        await _close_agent(link)
        raise deployed.outdated(host, installed, link.hello.get("build"), expected, settings.inventory)
    _check_protocol(host, link.hello)
    link.hello["installed"] = installed.path  # shown by fleet_check: this host's agent was deployed, not pushed
    return link


def agent_argv(host: Host, directory: str, bundle: Bundle) -> list[str]:
    python = sys.executable if host.connection == "local" and host.python == "python3" else host.python
    argv = [python, f"{directory}/{bundle.filename}", "serve", "--dir", directory]
    return ["sudo", "-n", "--", *argv] if host.become else argv


def remote_dir(host: Host) -> str:
    """The agent dir as the remote side sees it: `~/x` becomes `x`, relative to the login home."""
    directory = host.agent_dir.rstrip("/") or "/"
    if host.connection == "local":
        return os.path.expanduser(directory)
    if directory == "~":
        return "."
    return directory[2:] if directory.startswith("~/") else directory


def _start_error(host: Host, exc: LinkClosed) -> HostError:
    tail = exc.stderr_tail or ""
    if host.become and re.search(r"sudo: (command )?not found", tail):
        return HostError(f"{host.name} has no sudo, and ansible_become is set", "install sudo or unset ansible_become",
                         kind="sudo", stderr_tail=tail, exit_status=exc.exit_status)
    if (exc.exit_status == 127 or "command not found" in tail) and "can't open file" not in tail:
        return HostError(f"{host.name} has no {host.python}: the agent needs Python >= 3.8 there",
                         "install python3 on the host, or set ansible_python_interpreter to its path",
                         kind="no_python", stderr_tail=tail, exit_status=exc.exit_status)
    if "sudo" in tail and ("password" in tail or "not allowed" in tail or "not in the sudoers" in tail):
        return HostError(f"sudo -n refused on {host.name} (ansible_become is set)",
                         "allow the agent command in sudoers without a password, or unset ansible_become",
                         kind="sudo", stderr_tail=tail, exit_status=exc.exit_status)
    if exc.exit_status == 3:
        return HostError(f"{host.name}'s {host.python} is too old for the agent", tail or None,
                         kind="old_python", stderr_tail=tail, exit_status=3)
    return HostError(f"the agent on {host.name} did not start: {exc.message}", exc.hint,
                     kind="agent_start", stderr_tail=tail, exit_status=exc.exit_status)


def _check_protocol(host: Host, hello: dict[str, Any]) -> None:
    if hello.get("protocol") != PROTOCOL_VERSION:
        raise HostError(f"agent on {host.name} speaks protocol {hello.get('protocol')}, "
                        f"controller speaks {PROTOCOL_VERSION}", kind="protocol")


async def _close_agent(link: AgentLink) -> None:
    link.process.close()
    await link.process.finish()
