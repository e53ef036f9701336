"""The SSH packet path's cost per call: which cipher, and one packet per write instead of two.

A warm host-call is a few small packets each way, so what costs the controller is asyncssh's
Python work per packet, not bulk encryption. Two things halve it (bench/README.md, "The warm path"):

- **AES-GCM first** when the user's ssh_config does not choose (`Ciphers`): asyncssh's
  chacha20-poly1305 builds five cipher contexts per packet in Python, AES-GCM makes one call.
  Only on CPUs with AES instructions, where OpenSSL's AES-GCM is also the faster bulk cipher.
- **No empty MSG_IGNORE before each packet.** asyncssh sends one before every packet once
  encrypted: the countermeasure RFC 4251 (9.3.1) gives for CBC's predictable IVs. With an AEAD
  or CTR cipher it protects nothing (OpenSSH never sends it) and costs a second encryption, a
  second write and a second wake-up of the host's sshd per packet.
- **No packet log lines formatted for nothing.** asyncssh formats a log line per packet (names,
  sizes) before its logger drops it below debug level 3.

These reach into asyncssh (pinned below 3): the connection and channel classes are swapped for
subclasses that override one method each; tests/integration/test_ssh_path.py checks them on real
connections.
"""

from __future__ import annotations

import functools
import getpass
import logging
import platform
from pathlib import Path
from typing import Any

import asyncssh
from asyncssh.constants import MSG_IGNORE
from asyncssh.logging import logger as asyncssh_logger

log = logging.getLogger(__name__)

# asyncssh's default cipher list (2.24), AES-GCM moved first; each is also OpenSSH's default.
GCM_FIRST = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
_EMPTY = b"\x00\x00\x00\x00"  # String(b""): the MSG_IGNORE asyncssh inserts has this payload


class LeanConnection(asyncssh.SSHClientConnection):
    """An asyncssh client connection that leaves out the CBC-only MSG_IGNORE (see the module)."""

    def send_packet(self, pkttype: int, *args: bytes, handler: Any = None) -> None:
        if pkttype == MSG_IGNORE and args == (_EMPTY,) and not _cbc(self):
            return
        super().send_packet(pkttype, *args, handler=handler)


class LeanChannel(asyncssh.SSHClientChannel[bytes]):
    """An asyncssh session channel that formats packet log lines only when they are logged."""

    def log_sent_packet(self, pkttype: int, pktid: int | None, packet: Any, note: str = "") -> None:
        if _packets_logged():
            super().log_sent_packet(pkttype, pktid, packet, note)

    def log_received_packet(self, pkttype: int, pktid: int | None, packet: Any, note: str = "") -> None:
        if _packets_logged():
            super().log_received_packet(pkttype, pktid, packet, note)


def _cbc(conn: asyncssh.SSHClientConnection) -> bool:
    return str(conn.get_extra_info("send_cipher", "")).endswith("-cbc")


def _packets_logged() -> bool:
    return bool(asyncssh_logger._debug_level >= 3)  # asyncssh.set_debug_level(3): it logs packets


def lean(conn: asyncssh.SSHClientConnection) -> asyncssh.SSHClientConnection:
    """The same connection, sending one packet where asyncssh sent two."""
    if type(conn) is asyncssh.SSHClientConnection:
        conn.__class__ = LeanConnection
    return conn


def lean_channel(chan: asyncssh.SSHClientChannel[bytes]) -> asyncssh.SSHClientChannel[bytes]:
    """The same channel, without per-packet log lines nobody reads."""
    if type(chan) is asyncssh.SSHClientChannel:
        chan.__class__ = LeanChannel
    return chan


def cipher_options(address: str, port: int | None, user: str | None, config: Path | None) -> dict[str, Any]:
    """`encryption_algs` preferring AES-GCM, unless the user's ssh_config names Ciphers for this
    host (then asyncssh applies theirs) or the CPU has no AES instructions."""
    if not aes_instructions():
        return {}
    paths = _config_paths(config)
    if paths and _config_ciphers(tuple(paths), _stamps(paths), address, port or 22, user):
        return {}
    return {"encryption_algs": list(GCM_FIRST)}


@functools.cache
def aes_instructions() -> bool:
    """Whether OpenSSL's AES runs in hardware here (x86 `aes`, arm64 `aes` feature)."""
    if platform.system() != "Linux":
        return True  # macOS on both architectures has them
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    flags = {word for line in text.splitlines() if line.startswith(("flags", "Features")) for word in line.split()}
    return "aes" in flags


def _config_paths(config: Path | None) -> list[Path]:
    """The OpenSSH client configs asyncssh reads: ~/.ssh/config (if readable) and ours."""
    paths = [Path("~/.ssh/config").expanduser()]
    if config is not None:
        paths.append(config)
    return [p for p in paths if p.is_file()]


def _stamps(paths: list[Path]) -> tuple[int, ...]:
    return tuple(p.stat().st_mtime_ns for p in paths)


@functools.lru_cache(maxsize=4096)
def _config_ciphers(paths: tuple[Path, ...], stamps: tuple[int, ...], host: str, port: int, user: str | None) -> bool:
    """Whether these configs set Ciphers for this host (parsed as asyncssh parses them)."""
    from asyncssh.config import SSHClientConfig

    try:
        local = getpass.getuser()
        config = SSHClientConfig.load(None, list(paths), False, False, False, local, user or local, host, port)
    except Exception as exc:  # a config asyncssh cannot read: leave it to asyncssh to say so
        log.debug("cannot read %s for its Ciphers: %s", paths, exc)
        return True
    return config.get("Ciphers") is not None
