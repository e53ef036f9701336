"""Dumps as kdump writes them: a capture kernel's makedumpfile (-d 31, lzo and zlib) on the
fixture kernel's /proc/vmcore, laid out as kdump-tools does (/var/crash/<ts>/dump.<ts> beside
dmesg.<ts>), read by a real agent with the real crash and both drgns."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dumps.agentproc import Agent, alive, spawn
from tests.dumps.fixture import Fixture, link_file
from tests.dumps.kdump_fixture import KdumpFixture, ensure_kdump

STAMPS = {"lzo": "202612011603", "zlib": "202612011604"}  # kdump-tools' `date +%Y%m%d%H%M`


@pytest.fixture(scope="module")
def kdump(dump_fixture: Fixture) -> KdumpFixture:
    return ensure_kdump(dump_fixture)


@pytest.fixture
def crash_dir(kdump: KdumpFixture, tmp_path: Path) -> dict[str, Path]:
    """/var/crash as kdump-tools leaves it, the vmlinux beside each dump."""
    paths = {}
    for compression, stamp in STAMPS.items():
        directory = tmp_path / "crash" / stamp
        link_file(kdump.dump(compression), directory / f"dump.{stamp}")
        link_file(kdump.dmesg, directory / f"dmesg.{stamp}")
        link_file(kdump.vmlinux, directory / kdump.vmlinux.name)
        paths[compression] = directory / f"dump.{stamp}"
    return paths


@pytest.fixture
def agent(zipapp: Path, crash_dir: dict[str, Path], tmp_path: Path) -> Iterator[Agent]:
    started = spawn(zipapp, tmp_path, {"drgn_python": sys.executable}, tmp_path / "crash")
    yield started
    if started.proc.poll() is None:
        started.stop()


def test_dumps_list_reads_kdump_dumps_and_their_saved_log(
    agent: Agent, crash_dir: dict[str, Path], kdump: KdumpFixture
) -> None:
    dumps = {d["path"]: d for d in agent.result("dumps.list")["dumps"]}
    assert set(dumps) == {str(p) for p in crash_dir.values()}, dumps  # the dmesg files are not dumps
    for path in crash_dir.values():
        dump = dumps[str(path)]
        assert dump["format"] == "kdump-compressed" and dump["release"] == kdump.release and dump["build_id"]
        assert dump["debuginfo"]["source"] == "local" and not dump["incomplete"]
        log = dump["dmesg"]
        assert log["path"] == str(path).replace("/dump.", "/dmesg.") and log["panic"] == "sysrq triggered crash"
        assert any("sysrq_handle_crash" in line for line in log["lines"]), log["lines"]


@pytest.mark.parametrize("compression", ["lzo", "zlib"])
def test_crash_and_drgn_open_a_real_kdump(agent: Agent, crash_dir: dict[str, Path], compression: str) -> None:
    opened = agent.result("dumps.open", vmcore=str(crash_dir[compression]))
    sid = opened["session_id"]
    assert opened["format"] == "kdump-compressed" and not opened["minimal"]
    text = opened["page"]["text"]
    assert "sysrq triggered crash" in text and "PARTIAL DUMP" in text  # -d 31 left pages out
    bt = agent.result("dumps.crash", session_id=sid, command="bt | head -n 20")
    assert "sysrq_handle_crash" in bt["page"]["text"]
    tasks = agent.result(
        "dumps.drgn", session_id=sid, code="sorted({t.comm.string_().decode() for t in for_each_task(prog)})"
    )
    assert tasks["ok"], tasks
    assert all(name in tasks["value"] for name in ("cf-alpha", "cf-beta", "cf-gamma")), tasks["value"]
    summary = agent.result("dumps.script", session_id=sid, name="panic_summary")
    assert summary["ok"] and "sysrq triggered crash" in summary["page"]["text"], summary
    info = agent.result("dumps.sessions")["sessions"][0]
    assert agent.stop() == 0
    assert not alive(info["crash_pid"]) and not alive(info["drgn_pid"])


def test_old_drgn_reads_a_real_kdump_too(zipapp: Path, crash_dir: dict[str, Path], tmp_path: Path) -> None:
    """Debian's drgn 0.0.22 fails on QEMU's dumps (phys_base 0) but reads what kdump writes: the
    agent must not call it too old when it works."""
    old = spawn(zipapp, tmp_path / "old", {"drgn_python": "/usr/bin/python3"}, tmp_path / "crash")
    try:
        opened = old.result("dumps.open", vmcore=str(crash_dir["lzo"]))
        assert not [w for w in opened["warnings"] if "cannot read" in w], opened["warnings"]
        release = old.result(
            "dumps.drgn", session_id=opened["session_id"], code="prog['UTS_RELEASE'].string_().decode()"
        )
        assert release["ok"] and "cloud-amd64" in release["value"], release
    finally:
        assert old.stop() == 0


@pytest.fixture(scope="module")
def kdump_fleet(rig: Any, kdump: KdumpFixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """web01 with the lzo dump, web02 with the zlib one, each in kdump-tools' layout under
    /var/crash (the agent's default dump dir); the other hosts have none."""
    import shutil
    import tempfile

    import yaml

    CRASH_ROOT.mkdir(mode=0o700, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="crashfleet-kdump-", dir=CRASH_ROOT))
    doc = yaml.safe_load(rig.inventory.read_text())
    for (name, hostvars), compression in zip(
        doc["all"]["children"]["web"]["hosts"].items(), ["lzo", "zlib", None, None, None, None]
    ):
        directory = root / name
        directory.mkdir()
        if compression:
            stamp = STAMPS[compression]
            link_file(kdump.dump(compression), directory / stamp / f"dump.{stamp}")
            link_file(kdump.dmesg, directory / stamp / f"dmesg.{stamp}")
            link_file(kdump.vmlinux, directory / stamp / kdump.vmlinux.name)
        hostvars["crashfleet_dump_dirs"] = [str(directory)]
        hostvars["ansible_python_interpreter"] = sys.executable
        hostvars["crashfleet_agent_dir"] = str(rig.host(name).dir / "agent-kdump")
    inventory = tmp_path_factory.mktemp("kdump") / "inventory.yml"
    inventory.write_text(yaml.safe_dump(doc))
    yield inventory
    shutil.rmtree(root, ignore_errors=True)


CRASH_ROOT = Path("/var/crash")


@pytest.mark.ssh
@pytest.mark.asyncio
async def test_triage_and_dumps_list_over_ssh_on_kdump_dumps(rig: Any, kdump_fleet: Path) -> None:
    from crashfleet.controller.runtime import Runtime
    from crashfleet.controller.settings import Settings
    from crashfleet.controller.tools import dumps as d
    from crashfleet.controller.tools.triage import crash_triage
    from tests.conftest import wait_no_agents

    settings = Settings(
        inventory=kdump_fleet,
        ssh_known_hosts=rig.known_hosts,
        audit_log=kdump_fleet.parent / "audit.jsonl",
        host_deadline=120,
    )
    rt = Runtime.create(settings, who="pytest-kdump")
    try:
        listed = await d.dumps_list(rt, "web01:web02")
        assert listed.summary.ok == 2, listed.errors
        text = "\n".join(g.output or "" for g in listed.groups)
        assert "crash: sysrq-triggered crash (from kdump's dmesg file)" in text, text
        assert "kdump-compressed" in text and "debuginfo: local" in text
        triage = await crash_triage(rt, "all")
        assert not triage.errors, triage.errors
        crashed = [g for g in triage.groups if (g.data or {}).get("title")]
        assert len(crashed) == 1 and crashed[0].count == 2, triage.groups  # lzo and zlib: one bug
        data = crashed[0].data or {}
        assert data["title"] == "sysrq-triggered crash" and data["culprit"] == "sysrq_handle_crash", data
        assert data["sources"] == {"kdump's dmesg file": 2}, data
        assert [g.hosts for g in triage.groups if not (g.data or {}).get("title")] == ["web[03-06]"]
    finally:
        await rt.close()
        await wait_no_agents(rig.base, timeout=30)
