"""How the controller reaches a host: over SSH (asyncssh), or locally without it.

Both give the same thing: start a process from an argv, with pipes. Nothing is copied by
SFTP: the agent's launcher takes the zipapp over the process's stdin (agent/launcher.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shlex
from pathlib import Path
from typing import Any, Protocol

import asyncssh

from crashfleet.inventory import Host

from . import sshpath, stages
from .errors import ConnectLost, HostError, Unreachable
from .process import AgentProcess, LocalProcess, SshProcess
from .settings import Settings

log = logging.getLogger(__name__)


class Transport(Protocol):
    async def start(self, argv: list[str]) -> AgentProcess: ...
    async def close(self) -> None: ...
    def dropped(self) -> bool: ...


class LocalTransport:
    """The controller's own machine: the agent is a subprocess, no SSH."""

    async def start(self, argv: list[str]) -> AgentProcess:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        return LocalProcess(proc)

    async def close(self) -> None:
        return None

    def dropped(self) -> bool:
        return False  # a pipe to a local process: it can end, not drop


class SshTransport:
    """One asyncssh connection per host, reused for every channel."""

    def __init__(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn

    @classmethod
    async def connect(cls, host: Host, settings: Settings) -> SshTransport:
        stages.mark("connect")
        try:
            conn = await asyncssh.connect(host.address, client_factory=_StageClient, **connect_options(host, settings))
        except asyncssh.HostKeyNotVerifiable:
            if not settings.ssh_accept_new or _has_entry(settings.ssh_known_hosts_path(), host):
                raise host_key_error(host, settings) from None
            await accept_new_host_key(host, settings)
            return await cls.connect(host, settings)  # verified against the key just recorded
        except asyncssh.PermissionDenied as exc:
            raise HostError(
                f"SSH authentication failed for {host.user or 'the default user'}@{host.address}: {exc.reason}",
                "check ansible_user and ansible_ssh_private_key_file, or load the key into ssh-agent",
                kind="auth",
            ) from None
        except (OSError, asyncssh.Error) as exc:
            # Dropped mid-handshake (sshd overloaded, MaxStartups): worth another try; refused is not.
            lost = isinstance(exc, (ConnectionResetError, BrokenPipeError, asyncssh.ConnectionLost))
            raise (ConnectLost if lost else Unreachable)(
                f"cannot connect to {host.address}:{host.port or 22}: {_reason(exc)}",
                "is the host up and sshd listening?",
                kind="connect_lost" if lost else "connect",
            ) from None
        return cls(sshpath.lean(conn))

    async def start(self, argv: list[str]) -> AgentProcess:
        # The remote side always parses a command string with its shell: quote every word.
        process = SshProcess()
        chan, _ = await self.conn.create_session(process.session, shlex.join(argv), encoding=None)
        process.chan = sshpath.lean_channel(chan)
        return process

    async def close(self) -> None:
        self.conn.close()
        await self.conn.wait_closed()

    def dropped(self) -> bool:
        """The SSH connection itself is gone (not just the agent's channel)."""
        return self.conn.is_closed()


class _StageClient(asyncssh.SSHClient):
    """Marks the SSH stages as asyncssh reaches them, so a deadline can say which one hung."""

    def connection_made(self, conn: asyncssh.SSHClientConnection) -> None:
        stages.mark("ssh handshake")

    def begin_auth(self, username: str) -> None:
        stages.mark("ssh auth")

    def auth_completed(self) -> None:
        stages.mark("agent start")


def connect_options(host: Host, settings: Settings) -> dict[str, Any]:
    """asyncssh options: verified host keys always, ~/.ssh/config (ProxyJump) and ssh-agent honoured.

    known_hosts and key files are parsed once per change, not once per host: with hundreds of
    hosts, re-reading a known_hosts of hundreds of lines per connection is quadratic."""
    options: dict[str, Any] = {
        "known_hosts": _known_hosts(settings.ssh_known_hosts_path()),
        "keepalive_interval": settings.ssh_keepalive,
        "keepalive_count_max": settings.ssh_keepalive_count,
    }
    if settings.ssh_connect_timeout is not None:  # else the host deadline bounds it
        options["connect_timeout"] = options["login_timeout"] = settings.ssh_connect_timeout
    if host.port:
        options["port"] = host.port
    if host.user:
        options["username"] = host.user
    if host.key_file:
        options["client_keys"] = _client_keys(host.key_file)
    elif settings.ssh_key is not None:
        options["client_keys"] = _client_keys(str(settings.ssh_key.expanduser()))
    if settings.ssh_config is not None:
        options["config"] = [str(settings.ssh_config)]
    return options | sshpath.cipher_options(host.address, host.port, host.user, settings.ssh_config)


async def accept_new_host_key(host: Host, settings: Settings) -> None:
    """OpenSSH's accept-new: record the key of a host never seen before; a changed key is never accepted."""
    options: dict[str, Any] = {"port": host.port} if host.port else {}
    if settings.ssh_config is not None:
        options["config"] = [str(settings.ssh_config)]
    try:
        key = await asyncssh.get_server_host_key(host.address, **options)
    except (OSError, asyncssh.Error) as exc:
        raise Unreachable(
            f"cannot fetch the host key of {host.address}:{host.port or 22}: {_reason(exc)}",
            "is the host up and sshd listening?",
            kind="connect",
        ) from None
    if key is None:
        raise host_key_error(host, settings)
    known = settings.ssh_known_hosts_path()
    name = host.address if (host.port or 22) == 22 else f"[{host.address}]:{host.port}"
    known.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with known.open("ab") as handle:
        handle.write(name.encode() + b" " + key.export_public_key("openssh").strip() + b"\n")
    log.warning(
        "%s: accepted new host key %s into %s (CRASHFLEET_SSH_ACCEPT_NEW)", host.name, key.get_fingerprint(), known
    )


def host_key_error(host: Host, settings: Settings) -> HostError:
    known = settings.ssh_known_hosts_path()
    where = f"{host.address}:{host.port or 22}"
    if _has_entry(known, host):
        return HostError(
            f"host key of {host.name} ({where}) does NOT match {known}: it changed since it was "
            "recorded; possible man-in-the-middle, refusing to connect",
            f"if the host was really reinstalled, verify its new key out of band and update {known} (ssh-keygen -R)",
            kind="host_key_changed",
        )
    return HostError(
        f"host key of {host.name} ({where}) is not in {known}; refusing to connect to an unverified host",
        f"verify the key and add it to {known} (or set CRASHFLEET_SSH_KNOWN_HOSTS; "
        "CRASHFLEET_SSH_ACCEPT_NEW=true trusts first-seen keys, as ssh's accept-new)",
        kind="host_key_unknown",
    )


def _has_entry(known: Path, host: Host) -> bool:
    if not known.exists():
        return False
    try:
        trusted = asyncssh.read_known_hosts(str(known)).match(host.address, "", host.port or 22)
    except (OSError, ValueError, asyncssh.Error):
        return False
    return any(trusted[:3])


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


@functools.lru_cache(maxsize=8)
def _parsed_known_hosts(path: Path, stamp: tuple[int, int] | None) -> asyncssh.SSHKnownHosts | bytes:
    if stamp is None:
        return b""  # no file: nothing is trusted (asyncssh reads b"" as an empty list)
    return asyncssh.read_known_hosts(str(path))


def _known_hosts(path: Path) -> asyncssh.SSHKnownHosts | bytes | str:
    try:
        return _parsed_known_hosts(path, _stamp(path))
    except (OSError, ValueError, asyncssh.Error):
        return str(path)  # let asyncssh report the file's problem the way it always did


@functools.lru_cache(maxsize=64)
def _loaded_keys(path: str, stamp: tuple[int, int] | None) -> list[Any]:
    return [asyncssh.load_keypairs(path)[0]]


def _client_keys(path: str) -> list[Any]:
    try:
        return _loaded_keys(path, _stamp(Path(path)))
    except (OSError, ValueError, IndexError, asyncssh.Error):
        return [path]  # unreadable or passphrase-protected: asyncssh says why, per host, as before


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.Error):
        return exc.reason
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()  # asyncio's text ("Connect call failed") hides the cause
    return str(exc) or type(exc).__name__
