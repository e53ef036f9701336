"""The fleet over real SSH: provisioning, facts, grouping, failure statuses."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from crashfleet.controller.bundle import agent_bundle
from crashfleet.controller.runtime import Runtime
from crashfleet.controller.settings import Settings
from crashfleet.controller.tools.fleet import fleet_check, fleet_hosts
from tests.helpers import cmdline, parent
from tests.rig import Rig


def agent_file(rig: Rig, name: str) -> Path:
    return rig.host(name).agent_dir / agent_bundle().filename


def derived_inventory(rig: Rig, tmp_path: Path, host: str, **overrides: Any) -> Path:
    """The rig's inventory with extra vars on one host."""
    data = yaml.safe_load(rig.inventory.read_text())
    data["all"]["children"]["web"]["hosts"][host].update(overrides)
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    return path


async def test_push_then_reuse(rig: Rig, rig_settings: Settings) -> None:
    shutil.rmtree(rig.host("web01").agent_dir, ignore_errors=True)
    rt = Runtime.create(rig_settings)
    try:
        result = await fleet_check(rt, "web01")
        assert result.summary.ok == 1, result
        pushed = agent_file(rig, "web01")
        assert pushed.read_bytes() == agent_bundle().data
        first = pushed.stat()
    finally:
        await rt.close()
    rt = Runtime.create(rig_settings)  # a new controller: the host already has our build
    try:
        result = await fleet_check(rt, "web01")
        assert result.summary.ok == 1
        again = pushed.stat()
        assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns), "agent was re-uploaded"
        assert result.groups[0].data["agent"]["build"] == agent_bundle().build
    finally:
        await rt.close()


@pytest.mark.parametrize("damage", ["other content", "same size"])
async def test_damaged_agent_is_replaced(rig: Rig, rig_settings: Settings, damage: str) -> None:
    path = agent_file(rig, "web02")
    path.parent.mkdir(parents=True, exist_ok=True)
    good = agent_bundle().data
    # Same size defeats the size check: only the failed start or the build hash in hello can tell.
    path.write_bytes(b"print('not the agent')\n" if damage == "other content" else b"\0" * len(good))
    rt = Runtime.create(rig_settings)
    try:
        result = await fleet_check(rt, "web02")
        assert result.summary.ok == 1, result
        assert path.read_bytes() == good
    finally:
        await rt.close()


def ssh_output(rig: Rig, name: str, command: str) -> str:
    """What the real OpenSSH client gets from the host: the reference for our answers."""
    host = rig.host(name)
    argv = [
        "ssh",
        "-i",
        str(rig.client_key),
        "-o",
        f"UserKnownHostsFile={rig.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-p",
        str(host.port),
        f"root@{host.address}",
        command,
    ]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout.strip()


async def test_hello_facts_are_the_hosts(rig: Rig, runtime: Runtime) -> None:
    link = await runtime.fleet.link(runtime.fleet.host("web01"))
    facts = link.facts
    assert link.hello["build"] == agent_bundle().build
    assert facts["kernel"] == platform.release()
    assert facts["arch"] == platform.machine()
    assert facts["hostname"] == platform.node()
    assert facts["uid"] == os.geteuid()
    assert facts["python"] == ssh_output(rig, "web01", "python3 -c 'import platform; print(platform.python_version())'")
    assert facts["btf"] == os.path.exists("/sys/kernel/btf/vmlinux")
    assert facts["kcore"] == os.path.exists("/proc/kcore")
    assert set(facts["tools"]) == {"crash", "drgn", "bpftrace", "tcpdump"}
    for name, tool in facts["tools"].items():
        assert tool["present"] == bool(shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")) or name == "drgn"
    assert facts["store"]["free_bytes"] > 0
    assert facts["distro"]["id"] == "debian"


async def test_three_hosts_group_as_one(runtime: Runtime) -> None:
    result = await fleet_check(runtime, "web01:web02:web03")
    assert result.summary.total == 3 and result.summary.ok == 3
    assert len(result.groups) == 1
    group = result.groups[0]
    assert (group.hosts, group.count, group.status) == ("web[01-03]", 3, "ok")
    assert group.data is not None and group.data["kernel"] == platform.release()


async def test_host_down_is_unreachable(rig: Rig, runtime: Runtime) -> None:
    rig.stop_host("web04")
    try:
        result = await fleet_check(runtime, "web02:web03:web04")
    finally:
        rig.start_host("web04")
    assert (result.summary.ok, result.summary.unreachable) == (2, 1)
    [error] = result.errors
    assert error.host == "web04" and error.status == "unreachable"
    assert "refused" in error.message.lower()


async def test_hung_host_times_out_while_others_answer(rig: Rig, runtime: Runtime) -> None:
    rig.pause_host("web05")
    try:
        result = await fleet_check(runtime, "web01:web05", timeout=2)
    finally:
        rig.resume_host("web05")
    assert (result.summary.ok, result.summary.timeout) == (1, 1)
    assert result.summary.elapsed_ms < 6000
    assert result.errors[0].host == "web05" and "2 s" in result.errors[0].message


async def test_changed_host_key_fails_clearly(rig: Rig, runtime: Runtime) -> None:
    rig.rekey_host("web03")
    try:
        result = await fleet_check(runtime, "web02:web03")
    finally:
        rig.restore_host_key("web03")
    assert (result.summary.ok, result.summary.failed) == (1, 1)
    [error] = result.errors
    assert error.host == "web03"
    assert "does NOT match" in error.message and "man-in-the-middle" in error.message


async def test_unknown_host_key_is_refused(rig: Rig, rig_settings: Settings, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(
        "".join(
            line + "\n"
            for line in rig.known_hosts.read_text().splitlines()
            if not line.startswith(f"[{rig.host('web06').address}]")
        )
    )
    rt = Runtime.create(rig_settings.model_copy(update={"ssh_known_hosts": known}))
    try:
        result = await fleet_check(rt, "web05:web06")
    finally:
        await rt.close()
    assert (result.summary.ok, result.summary.failed) == (1, 1)
    assert "not in" in result.errors[0].message and result.errors[0].host == "web06"


async def test_accept_new_records_a_first_seen_key_but_never_a_changed_one(
    rig: Rig, rig_settings: Settings, tmp_path: Path
) -> None:
    known = tmp_path / "ssh" / "known_hosts"  # not there yet: created on the first accepted key
    settings = rig_settings.model_copy(update={"ssh_known_hosts": known, "ssh_accept_new": True})
    rt = Runtime.create(settings)
    try:
        result = await fleet_check(rt, "web04")
    finally:
        await rt.close()
    assert result.summary.ok == 1, result
    web04 = rig.host("web04")
    recorded = [line.split() for line in known.read_text().splitlines()]
    expected = [
        line.split()
        for line in rig.known_hosts.read_text().splitlines()
        if line.startswith(f"[{web04.address}]:{web04.port} ")
    ]
    assert recorded == expected  # exactly the host's real key, under ssh's own name for it

    rig.rekey_host("web04")
    rt = Runtime.create(settings)
    try:
        result = await fleet_check(rt, "web04")
    finally:
        rig.restore_host_key("web04")
        await rt.close()
    assert result.summary.failed == 1 and "does NOT match" in result.errors[0].message
    assert len(known.read_text().splitlines()) == 1  # the changed key was not added


async def test_missing_python_says_so(rig: Rig, rig_settings: Settings, tmp_path: Path) -> None:
    inventory = derived_inventory(rig, tmp_path, "web06", ansible_python_interpreter="/nonexistent/python3")
    rt = Runtime.create(rig_settings.model_copy(update={"inventory": inventory}))
    try:
        result = await fleet_check(rt, "web06")
    finally:
        await rt.close()
    [error] = result.errors
    assert error.status == "failed"
    assert "has no /nonexistent/python3" in error.message and "install python3" in (error.hint or "")


async def test_become_runs_agent_through_sudo(rig: Rig, rig_settings: Settings, tmp_path: Path) -> None:
    inventory = derived_inventory(rig, tmp_path, "web06", ansible_become=True)
    rt = Runtime.create(rig_settings.model_copy(update={"inventory": inventory}))
    try:
        link = await rt.fleet.link(rt.fleet.host("web06"))
        pid = link.facts["agent"]["pid"]
        assert "sudo" in cmdline(parent(pid) or 0)
    finally:
        await rt.close()


async def test_pattern_matching_nothing_lists_groups(runtime: Runtime) -> None:
    from crashfleet.controller.errors import UsageError

    with pytest.raises(UsageError) as info:
        await fleet_check(runtime, "wbe")
    assert "web" in str(info.value)


async def test_fleet_hosts_folds(runtime: Runtime) -> None:
    result = fleet_hosts(runtime, "web:!web03")
    assert result.count == 5 and result.hosts == "web[01-02,04-06]"
    assert result.groups == {"web": "web[01-02,04-06]"}


async def test_host_deadline_setting_applies_without_a_timeout(rig: Rig, rig_settings: Settings) -> None:
    rt = Runtime.create(rig_settings.model_copy(update={"host_deadline": 2.0}))
    rig.pause_host("web05")
    try:
        result = await fleet_check(rt, "web04:web05")
    finally:
        rig.resume_host("web05")
        await rt.close()
    assert (result.summary.ok, result.summary.timeout) == (1, 1)
    assert "2 s" in result.errors[0].message and result.summary.elapsed_ms < 6000
