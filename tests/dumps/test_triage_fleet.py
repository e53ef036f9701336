"""Fleet triage through the real MCP client, on crashes nobody here chose the answer for: 18 real
sshd hosts, each in its own mount namespace with its own /var/crash (and its own policy), laid out
from real QEMU crashes of ten kinds (tests/dumps/crash_kinds.py). Every log source is used: kdump's
dmesg files, makedumpfile, the printk buffer read with VMCOREINFO, drgn, crash's log, a pstore
record, a persistent journal; one host kept nothing. The answer must be what a kernel engineer
would write: one group per bug, exactly its hosts, named after the function to blame."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ClusterShell.NodeSet import NodeSet

from tests.dumps.crash_kinds import CrashKinds, ensure_kinds
from tests.dumps.crash_scenes import Scene, days_ago, drgn_venv, journal_dir, lay_out, pstore_dir
from tests.e2e.conftest import LEGACY, StdioServer, structured
from tests.rig import Rig, free_port
from tests.rig.namespace import upper

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(900)]
POLICY = "/etc/crashfleet/agent-policy.json"
SCENES = {
    "t01": Scene("elf", "null_deref"),
    "t02": Scene("kdump-dmesg", "null_deref"),
    "t03": Scene("pstore", "null_deref"),
    "t04": Scene("kdump", "softlockup_a"),
    "t05": Scene("kdump-dmesg", "softlockup_a"),
    "t06": Scene("elf", "softlockup_b"),
    "t07": Scene("elf", "softlockup_b"),
    "t08": Scene("elf", "bug_on"),
    "t09": Scene("elf", "warn"),
    "t10": Scene("elf", "gpf"),
    "t11": Scene("elf", "divide"),
    "t12": Scene("elf", "hung_task"),
    "t13": Scene("elf", "oom"),
    "t14": Scene("journal", "hung_task"),
    "t15": Scene("none"),
    "t16": Scene("flat", "sysrq"),
    "t17": Scene("old", "hung_task"),  # a VMCOREINFO without the printk layout (before 5.10): drgn reads it
    "t18": Scene("elf", "gpf_kaslr"),  # gpf's bug on a KASLR kernel whose log buffer was allocated at boot
}
ANSWER_WAIT = 600.0  # the complete answer of a job: crash's log on one host is the slow part


def expected(kinds: CrashKinds) -> dict[str, tuple[str | None, set[str]]]:
    """title -> (culprit, hosts): the truth the fixtures were built with."""
    groups: dict[str, tuple[str | None, set[str]]] = {}
    for host, scene in SCENES.items():
        if scene.kind is None:
            continue
        truth = kinds.truth(scene.kind)
        title = _title_of(kinds, scene.kind)
        groups.setdefault(title, (truth.culprit or truth.owner, set()))[1].add(host)  # OOM: the hog's comm
    return groups


def _title_of(kinds: CrashKinds, kind: str) -> str:
    from crashfleet.agent.dumps import oops

    serial = kinds.serial(kind) or kinds.base.dir / f"{kind}.serial.log"
    title = oops.scan(serial)["title"] if serial.exists() else "sysrq-triggered crash"
    assert title is not None
    return title


def _host_policy(rig: Rig, name: str, scene: Scene, kinds: CrashKinds, work: Path) -> None:
    """The host's /etc policy (hermetic: its own pstore and journal, no system debuginfo) and its
    /var/crash: an opaque overlay dir, so the machine's own /var/crash stays out."""
    ns = rig.host(name).ns_dir
    crash = upper(ns, "/var/crash")
    crash.mkdir(parents=True)
    os.setxattr(crash, "trusted.overlay.opaque", b"y")
    lay_out(scene, crash, kinds)
    pstore, journal = work / name / "pstore", work / name / "journal"
    pstore.mkdir(parents=True)
    journal.mkdir(parents=True)
    if scene.layout == "pstore":
        pstore_dir(kinds, pstore)
    if scene.layout == "journal":
        serial = kinds.serial(str(scene.kind))
        assert serial is not None
        journal_dir(serial, journal, days_ago(1))
    policy = upper(ns, POLICY)
    policy.parent.mkdir(parents=True)
    settings = {
        "pstore_dirs": [str(pstore)],
        "journal_dirs": [str(journal)],
        "drgn_venv": str(drgn_venv()),  # found as the role's venv is: /root is not seen here
        "vmlinux_standard_dirs": False,
        "debuginfod_urls": [],
    }
    policy.write_text(json.dumps(settings))
    policy.chmod(0o644)


@pytest.fixture(scope="module")
def kinds() -> CrashKinds:
    return ensure_kinds()


@pytest.fixture(scope="module")
def scene_rig(kinds: CrashKinds) -> Iterator[Rig]:
    base = Path(tempfile.mkdtemp(prefix="crashfleet-triage-"))  # not under pytest's 0700 tmp (sshd reads it)
    base.chmod(0o755)
    rig = Rig(base, len(SCENES), port=free_port(len(SCENES)), prefix="t", isolated=True)
    for name, scene in SCENES.items():
        _host_policy(rig, name, scene, kinds, base / "kept")
    try:
        with rig:
            yield rig
    finally:
        shutil.rmtree(base, ignore_errors=True)


def serve(rig: Rig, home: Path, **env: str) -> StdioServer:
    return StdioServer(LEGACY, rig, home, CRASHFLEET_HOST_DEADLINE="300", **env)


@pytest.fixture(scope="module")
def server(scene_rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioServer]:
    started = serve(scene_rig, tmp_path_factory.mktemp("triage"))
    yield started
    started.close()


def complete(server: StdioServer, answer: dict[str, Any]) -> dict[str, Any]:
    """The complete answer: this one, or its job's once the hosts still working are done."""
    deadline = time.monotonic() + ANSWER_WAIT
    while answer.get("job_id") and answer["summary"]["running"]:
        assert time.monotonic() < deadline, answer
        time.sleep(1)  # polling the job, as a client would
        answer = structured(server.call("job_status", {"job_id": answer["job_id"]}))
    return answer


def groups_by_title(answer: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    return {(g.get("data") or {}).get("title"): g for g in answer["groups"]}


def test_each_bug_is_one_group_of_exactly_its_hosts_named_after_its_culprit(
    server: StdioServer, kinds: CrashKinds
) -> None:
    first = structured(server.call("crash_triage", {"pattern": "all"}, timeout=60))  # inside the client's patience
    answer = complete(server, first)
    assert answer["summary"]["ok"] == len(SCENES) and not answer["errors"], answer
    found = groups_by_title(answer)
    truth = expected(kinds)
    assert set(found) == set(truth) | {None}, sorted(str(t) for t in found)
    for title, (culprit, hosts) in truth.items():
        group = found[title]
        assert set(NodeSet(group["hosts"])) == hosts, (title, group["hosts"])
        assert group["data"]["culprit"] == culprit, group["data"]
        assert group["data"]["releases"] == [kinds.release], group["data"]
    assert set(NodeSet(found[None]["hosts"])) == {"t15"}
    sources = {source for g in found.values() for source in (g["data"].get("sources") or {})}
    assert len(sources) == 7, sources  # dmesg file, makedumpfile, printk, drgn, crash log, pstore, journal
    assert "crash_open(host=" in found[_title_of(kinds, "gpf")]["data"]["drill_down"]


def test_past_the_calls_budget_the_rest_is_a_job_with_the_complete_answer(
    scene_rig: Rig, kinds: CrashKinds, tmp_path: Path
) -> None:
    hurried = serve(scene_rig, tmp_path / "home", CRASHFLEET_CALL_BUDGET="1")
    try:
        first = structured(hurried.call("crash_triage", {"pattern": "all"}, timeout=60))
        assert first["job_id"] and first["summary"]["running"] >= 1, first  # crash's log alone takes seconds
        assert "job_status" in (first.get("note") or ""), first
        answer = complete(hurried, first)
        assert {t for t in groups_by_title(answer)} == set(expected(kinds)) | {None}
        listed = structured(hurried.call("jobs_list", {}))
        assert [j["state"] for j in listed["jobs"] if j["job_id"] == first["job_id"]] == ["done"]
    finally:
        hurried.close()


def test_dumps_list_folds_hosts_whose_listings_agree(server: StdioServer) -> None:
    answer = complete(server, structured(server.call("dumps_list", {"pattern": "all"}, timeout=60)))
    by_hosts = {g["hosts"]: g for g in answer["groups"]}
    assert "t[06-07]" in by_hosts, list(by_hosts)  # the same layout and kernel on two hosts: one group
    folded = by_hosts["t[06-07]"]
    assert "/var/crash/vmcore-softlockup_b" in folded["output"] and folded["data"]["size_mib"], folded
    titled = [g for g in answer["groups"] if "(from kdump's dmesg file)" in (g["output"] or "")]
    assert {g["hosts"] for g in titled} == {"t02", "t05"}, [g["hosts"] for g in titled]
    assert len(json.dumps(answer)) < 16_000
