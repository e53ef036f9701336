"""The SSH packet path on real sshd hosts: which cipher a link negotiates, and one packet per
write (controller/sshpath.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from crashfleet.agent import protocol
from crashfleet.controller import sshpath
from crashfleet.controller.runtime import Runtime
from crashfleet.controller.settings import Settings
from tests.rig import Rig

pytestmark = pytest.mark.ssh


def send_cipher(rt: Runtime, host: str) -> str:
    return str(rt.fleet.links[host].transport.conn.get_extra_info("send_cipher"))  # type: ignore[attr-defined]


@pytest.fixture
def packet_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """asyncssh's packet log (debug level 3), captured; back to its defaults afterwards."""
    asyncssh.set_log_level(logging.DEBUG)
    asyncssh.set_debug_level(3)
    caplog.set_level(logging.DEBUG, logger="asyncssh")
    try:
        yield caplog
    finally:
        asyncssh.set_debug_level(1)
        asyncssh.set_log_level(logging.WARNING)


async def test_aes_gcm_when_the_ssh_config_names_no_ciphers(runtime: Runtime) -> None:
    await runtime.fleet.call(runtime.fleet.host("web01"), protocol.PING)
    expected = "aes128-gcm@openssh.com" if sshpath.aes_instructions() else "chacha20-poly1305@openssh.com"
    assert send_cipher(runtime, "web01") == expected


async def test_the_users_ciphers_win(rig: Rig, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  Ciphers chacha20-poly1305@openssh.com\n")
    settings = Settings(
        inventory=rig.inventory, ssh_known_hosts=rig.known_hosts, audit_log=tmp_path / "audit.jsonl", ssh_config=config
    )
    rt = Runtime.create(settings, who="pytest")
    try:
        await rt.fleet.call(rt.fleet.host("web02"), protocol.PING)
        assert send_cipher(rt, "web02") == "chacha20-poly1305@openssh.com"
    finally:
        await rt.close()


async def test_one_packet_per_write_and_no_ignore_packets(
    runtime: Runtime, packet_log: pytest.LogCaptureFixture
) -> None:
    host = runtime.fleet.host("web03")
    await runtime.fleet.link(host)
    packet_log.clear()
    await runtime.fleet.call(host, protocol.PING)
    sent = [r.getMessage() for r in packet_log.records if "Sent " in r.getMessage()]
    assert any("MSG_CHANNEL_DATA" in line for line in sent), sent  # the packet log is on: it names what went
    assert not any("MSG_IGNORE" in line for line in sent), sent
