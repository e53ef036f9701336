"""Per-host differences for bpftrace, made real with isolated rig hosts (own mount namespace).

iso01: tracefs unmounted and its policy forbids the agent to mount it: it lacks every
tracepoint. iso02: tracefs unmounted, default policy: its agent mounts tracefs, inside
iso02's namespace only; its policy caps a run's output at CAP bytes. web01/web02 (the session rig) are this
machine as it is.
The real root namespace's tracefs is never mounted or unmounted here (other runs use it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml

from crashfleet.controller.runtime import Runtime
from crashfleet.controller.settings import Settings
from crashfleet.controller.tools.bpftrace import (
    bpftrace_info,
    bpftrace_probes,
    bpftrace_result,
    bpftrace_run,
    bpftrace_tools,
)
from crashfleet.controller.tools.output import output_search
from tests.conftest import wait_no_agents
from tests.helpers import agent_pids
from tests.integration.test_bpftrace import tracefs, tracers  # noqa: F401 - the session fixture
from tests.rig import Rig, free_port
from tests.rig.namespace import upper

POLICY = "/etc/crashfleet/agent-policy.json"
MIXED = "web01:web02:iso01"
CAP = 64 * 1024


def tracefs_lines(pid: int | str) -> list[str]:
    """tracefs mounts seen by a process (its mount namespace)."""
    return [line for line in Path(f"/proc/{pid}/mounts").read_text().splitlines() if " tracefs " in line]


@pytest.fixture(scope="module")
def iso_rig() -> Iterator[Rig]:
    """iso01 and iso02, isolated; their policies (in their /etc overlays): see the module's docstring."""
    # Not under pytest's 0700 tmp dir, like the deploy rig (sshd reads files as the login user).
    base = Path(tempfile.mkdtemp(prefix="crashfleet-bpf-iso-"))
    base.chmod(0o755)
    rig = Rig(base, 2, port=free_port(2), prefix="iso", isolated=True)
    for host, settings in (("iso01", {"bpftrace_mount_tracefs": False}), ("iso02", {"bpftrace_max_output_bytes": CAP})):
        policy = upper(rig.host(host).ns_dir, POLICY)  # the overlay's upper layer, written before it is mounted
        policy.parent.mkdir(parents=True)
        policy.write_text(json.dumps(settings))
        policy.chmod(0o644)
    try:
        with rig:
            yield rig
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def mixed(rig: Rig, iso_rig: Rig, tmp_path: Path) -> AsyncIterator[Runtime]:
    """A runtime on web01..06 plus iso01..02: one inventory, one known_hosts."""
    doc = yaml.safe_load(rig.inventory.read_text())
    doc["all"]["children"].update(yaml.safe_load(iso_rig.inventory.read_text())["all"]["children"])
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(doc))
    (tmp_path / "known_hosts").write_text(rig.known_hosts.read_text() + iso_rig.known_hosts.read_text())
    rt = Runtime.create(
        Settings(
            inventory=tmp_path / "inventory.yml",
            ssh_known_hosts=tmp_path / "known_hosts",
            audit_log=tmp_path / "audit.jsonl",
            host_deadline=30,
        ),
        who="pytest",
    )
    yield rt
    await rt.close()
    await wait_no_agents(iso_rig.base)
    await wait_no_agents(rig.base)


async def test_drift_names_what_the_host_without_tracefs_lacks(mixed: Runtime) -> None:
    result = await bpftrace_probes(mixed, MIXED, filter="tracepoint:sched:*")
    assert result.summary.ok == 3, result
    by_hosts = {g.hosts: g for g in result.groups}
    assert set(by_hosts) == {"web[01-02]", "iso01"}, by_hosts.keys()
    assert by_hosts["iso01"].total_lines == 0 and "forbids" in by_hosts["iso01"].data["tracefs"]  # type: ignore[index]
    [lacking, full] = result.drift
    assert lacking.hosts == "iso01" and lacking.count == 0 and full.hosts == "web[01-02]" and full.lacks_count == 0
    assert lacking.lacks_count == by_hosts["web[01-02]"].total_lines > 10
    assert "tracepoint:sched:sched_switch" in lacking.lacks and "see drift" in (result.note or "")


async def test_tools_say_which_host_cannot_run_them(mixed: Runtime) -> None:
    result = await bpftrace_tools(mixed, MIXED)
    tools = {t.name: t for t in result.tools}
    for name in ("runqlat", "syscount", "execsnoop"):  # bundled, tracepoint-based
        assert tools[name].runs_on == "web[01-02]", tools[name]
        [cannot] = tools[name].cannot_run
        assert cannot.hosts == "iso01" and "uses tracepoints" in cannot.reason
        assert "bpftrace_mount_tracefs" in cannot.reason, cannot.reason


async def test_run_on_the_host_without_tracefs_fails_there_only(rig: Rig, iso_rig: Rig, mixed: Runtime) -> None:
    result = await bpftrace_run(mixed, MIXED, tool="syscount", duration=1)
    assert result.summary.ok == 2 and result.summary.failed == 1, result
    [error] = result.errors
    assert error.host == "iso01" and "tool syscount cannot run on this host: uses tracepoints" in error.message
    counts = {m.name: m for m in result.maps}["@syscalls"]
    assert counts.hosts == "web[01-02]" and counts.keys
    program = await bpftrace_run(mixed, MIXED, program="tracepoint:sched:sched_switch { @n = count(); }", duration=1)
    [error] = program.errors
    assert error.host == "iso01" and "uses tracepoints, but tracefs is not mounted" in error.message
    assert "bpftrace_mount_tracefs" in (error.hint or "") and program.maps[0].hosts == "web[01-02]"
    assert tracers(rig) == [] and tracers(iso_rig) == []


async def test_info_shows_tracefs_missing(mixed: Runtime) -> None:
    result = await bpftrace_info(mixed, MIXED)
    by_hosts = {g.hosts: g.data or {} for g in result.groups}
    assert set(by_hosts) == {"web[01-02]", "iso01"}, by_hosts.keys()
    iso, web = by_hosts["iso01"], by_hosts["web[01-02]"]
    assert iso["tracefs"]["path"] is None and "forbids" in iso["tracefs"]["error"]
    assert "tracepoint" not in iso["probe_types"] and web["probe_types"]["tracepoint"] > 100
    assert web["tracefs"]["path"] and result.note is None


async def test_agent_mounts_tracefs_in_its_own_namespace(iso_rig: Rig, mixed: Runtime) -> None:
    root_before = tracefs_lines("self")
    result = await bpftrace_info(mixed, "iso02")
    [group] = result.groups
    assert group.data and group.data["tracefs"]["path"] == "/sys/kernel/tracing"
    assert group.data["probe_types"]["tracepoint"] > 100
    assert result.note == "the agent mounted tracefs on iso02 (policy bpftrace_mount_tracefs)"
    [agent] = agent_pids(str(iso_rig.host("iso02").dir))
    assert tracefs_lines(agent) and os.readlink(f"/proc/{agent}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert tracefs_lines("self") == root_before  # the machine's own mount table is untouched
    run = await bpftrace_run(mixed, "iso02", tool="syscount", duration=1)
    assert run.summary.ok == 1 and run.maps, run


async def test_output_cap_stops_the_flood_but_keeps_the_maps(iso_rig: Rig, mixed: Runtime) -> None:
    # Thousands of printf lines a millisecond, and a map that counts them: the cap is hit at once.
    flood = 'interval:ms:1 { unroll(100) { @lines = count(); printf("line of the flood\\n"); } }'
    result = await bpftrace_run(mixed, "iso02", program=flood, duration=30)
    if result.job_id:  # a slow machine: collect it
        result = await bpftrace_result(mixed, result.job_id, wait=30)
    assert result.summary.ok == 1, result
    [group] = result.groups
    assert group.output and group.output.startswith("line of the flood\n")
    [lines] = result.maps
    assert (
        lines.name == "@lines"
        and lines.value
        and lines.value > CAP // len('{"type": "printf", "data": "line of the flood\\n"}\n')
    )
    # In the store: the flood up to the cap, the cap's marker, then the map bpftrace printed on its way out.
    found = await output_search(mixed, group.output_ids[0], r"output cap of \d+ bytes reached|\"@lines\"")
    assert [m.text.startswith("{") for m in found.matches] == [False, True], found.matches
    assert f"output cap of {CAP} bytes reached" in found.matches[0].text
    assert found.matches[0].line > 1000 and found.total_lines == found.matches[1].line
    assert tracers(iso_rig) == []
