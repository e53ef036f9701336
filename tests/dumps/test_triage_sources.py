"""dumps.triage on a real agent: each host's crash named from the cheapest kernel log that has it.

Each source is used by a real scene: kdump's dmesg file, makedumpfile on a kdump dump, drgn on an
ELF dump, crash's log on a flattened one (the last resort), a pstore record and a persistent
journal's previous boot on hosts without a dump. Plus what goes wrong: nothing kept at all, a dump
no source can read, a pstore record of an earlier crash, logs cut off, huge or not UTF-8."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crashfleet.agent.dumps import triage
from tests.dumps.agentproc import Agent, spawn
from tests.dumps.crash_kinds import CrashKinds, ensure_kinds
from tests.dumps.crash_scenes import STAMP, Scene, days_ago, journal_dir, lay_out, pstore_dir

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def kinds() -> CrashKinds:
    return ensure_kinds()


@pytest.fixture
def host(zipapp: Path, tmp_path: Path) -> Iterator[Any]:
    """host(policy) -> a real agent whose dump dir is tmp_path/crash (hermetic: its own pstore
    and journal dirs unless the policy names others)."""
    agents: list[Agent] = []

    def start(**policy: Any) -> Agent:
        policy = {"pstore_dirs": [str(tmp_path / "no-pstore")], "journal_dirs": [str(tmp_path / "no-journal")]} | policy
        (tmp_path / "crash").mkdir(exist_ok=True)
        agent = spawn(zipapp, tmp_path, dict(policy, drgn_python=sys.executable), tmp_path / "crash")
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        if agent.proc.poll() is None:
            agent.stop()


def named(answer: dict[str, Any], kinds: CrashKinds, kind: str) -> None:
    """The answer names the kind's crash after its culprit, in its module."""
    truth = kinds.truth(kind)
    report = answer["report"]
    assert report is not None, answer
    assert report["culprit"] == truth.culprit and f"in {truth.culprit} [{truth.owner}]" in report["title"], report


@pytest.mark.parametrize(
    ("scene", "source"),
    [
        (Scene("kdump-dmesg", "null_deref"), triage.DMESG_FILE),
        (Scene("kdump", "softlockup_a"), triage.MAKEDUMPFILE),
        (Scene("bare", "softlockup_b"), triage.PRINTK),  # no vmlinux needed
        (Scene("elf", "gpf_kaslr"), triage.PRINTK),  # KASLR, a log buffer allocated at boot
        (Scene("old", "hung_task"), triage.DRGN),  # no printk layout in VMCOREINFO: drgn and the vmlinux
    ],
    ids=lambda v: v.layout if isinstance(v, Scene) else "",
)
def test_a_dump_is_named_from_the_cheapest_source(
    host: Any, kinds: CrashKinds, tmp_path: Path, scene: Scene, source: str
) -> None:
    dump = lay_out(scene, tmp_path / "crash", kinds)
    agent = host()
    answer = agent.result("dumps.triage")
    assert answer["source"] == source and answer["dump"]["path"] == str(dump), answer
    named(answer, kinds, str(scene.kind))
    header = answer["report"]["evidence"][0].split("] ")[-1][:40]
    kept = agent.result("search", output_id=answer["output_id"], pattern=header)  # the report stays on the host
    assert kept["matches"], (header, kept)
    assert agent.stop() == 0


def test_crash_log_is_the_last_resort(host: Any, kinds: CrashKinds, tmp_path: Path) -> None:
    """A flattened dump: makedumpfile and drgn cannot read it, crash can (in a session kept open)."""
    lay_out(Scene("flat", "sysrq"), tmp_path / "crash", kinds)
    agent = host()
    answer = agent.result("dumps.triage")
    assert answer["source"] == triage.CRASH, answer
    assert [t["source"] for t in answer["tried"]] == [
        triage.DMESG_FILE,
        triage.MAKEDUMPFILE,
        triage.PRINTK,
        triage.DRGN,
    ]
    assert answer["report"]["title"] == "sysrq-triggered crash", answer["report"]
    assert len(agent.result("dumps.sessions")["sessions"]) == 1  # kept for a drill-down
    assert agent.stop() == 0


def test_a_dump_no_source_can_read_says_what_was_tried(host: Any, kinds: CrashKinds, tmp_path: Path) -> None:
    lay_out(Scene("old-bare", "gpf"), tmp_path / "crash", kinds)  # no printk layout, no vmlinux, no debuginfod
    agent = host()
    answer = agent.result("dumps.triage")
    assert answer["report"] is None and answer["dump"] is not None, answer
    tried = {t["source"]: t["why"] for t in answer["tried"]}
    assert list(tried) == [triage.DMESG_FILE, triage.MAKEDUMPFILE, triage.PRINTK, triage.DRGN, triage.CRASH]
    assert "before 5.10" in tried[triage.PRINTK] and "no matching vmlinux" in tried[triage.DRGN], tried
    assert agent.result("dumps.sessions")["sessions"] == []  # nothing left open
    assert agent.stop() == 0


def test_a_host_without_a_dump_is_named_from_its_pstore_record(host: Any, kinds: CrashKinds, tmp_path: Path) -> None:
    records = pstore_dir(kinds, tmp_path / "pstore")
    agent = host(pstore_dirs=[str(records)])
    answer = agent.result("dumps.triage")
    assert answer["dump"] is None and answer["source"] == triage.PSTORE and answer["stale"] is None, answer
    named(answer, kinds, "null_deref")
    assert answer["report"]["oopses"] >= 1
    assert agent.stop() == 0


def test_a_host_without_a_dump_is_named_from_the_previous_boots_journal(
    host: Any, kinds: CrashKinds, tmp_path: Path
) -> None:
    serial = kinds.serial("hung_task")
    assert serial is not None
    journal = journal_dir(serial, tmp_path / "journal", days_ago(1))
    agent = host(journal_dirs=[str(journal)])
    answer = agent.result("dumps.triage")
    assert answer["source"] == triage.JOURNAL and answer["origin"].startswith("boot "), answer
    named(answer, kinds, "hung_task")
    assert [t["source"] for t in answer["tried"]] == [triage.PSTORE]
    assert agent.stop() == 0


def test_a_pstore_record_of_an_earlier_crash_says_so(host: Any, kinds: CrashKinds, tmp_path: Path) -> None:
    """The journal knows a boot after the record's crash: the record is not what ended the last boot."""
    records = pstore_dir(kinds, tmp_path / "pstore", when=days_ago(30))
    serial = kinds.serial("warn")
    assert serial is not None
    journal = journal_dir(serial, tmp_path / "journal", days_ago(1))
    agent = host(pstore_dirs=[str(records)], journal_dirs=[str(journal)])
    answer = agent.result("dumps.triage")
    assert answer["source"] == triage.PSTORE and "older than the last boot" in answer["stale"], answer
    assert agent.stop() == 0


def test_a_host_that_kept_nothing_says_where_it_looked(host: Any, tmp_path: Path) -> None:
    (tmp_path / "no-pstore").mkdir()
    agent = host()
    answer = agent.result("dumps.triage")
    assert answer["dump"] is None and answer["report"] is None, answer
    assert [t["source"] for t in answer["tried"]] == [triage.PSTORE, triage.JOURNAL], answer["tried"]
    assert agent.stop() == 0


def kdump_with_log(kinds: CrashKinds, crash_dir: Path, log: bytes) -> None:
    """null_deref's kdump dump with `log` as the dmesg file kdump-tools saved beside it."""
    lay_out(Scene("kdump", "null_deref"), crash_dir, kinds)
    (crash_dir / STAMP / f"dmesg.{STAMP}").write_bytes(log)


def test_a_huge_log_with_bytes_that_are_not_utf8_is_named(host: Any, kinds: CrashKinds, tmp_path: Path) -> None:
    """100 MB of an earlier boot's noise (not UTF-8 either), then the boot that crashed."""
    dmesg = kinds.dmesg("null_deref")
    assert dmesg is not None
    noise = b"[    1.000000] Linux version 6.1.0 (earlier boot)\n" + b"[    2.000000] eth0: \xff\xfe garbage\n" * (
        100 << 15
    )
    kdump_with_log(kinds, tmp_path / "crash", noise + dmesg.read_bytes())
    agent = host()
    answer = agent.result("dumps.triage")
    assert answer["source"] == triage.DMESG_FILE and answer["log_bytes"] > 100 << 20, answer["log_bytes"]
    named(answer, kinds, "null_deref")
    assert agent.stop() == 0


def test_a_log_cut_off_inside_the_report_is_titled_from_what_survived(
    host: Any, kinds: CrashKinds, tmp_path: Path
) -> None:
    dmesg = kinds.dmesg("null_deref")
    assert dmesg is not None
    text = dmesg.read_bytes()
    cut = text.index(b"Call Trace")  # the RIP line survived, the stack did not
    kdump_with_log(kinds, tmp_path / "crash", text[:cut])
    agent = host()
    report = agent.result("dumps.triage")["report"]
    assert report["truncated"] and report["culprit"] == "cfx_flush_ring", report
    assert any("cut off" in note or "ends" in note for note in report["notes"]), report["notes"]
    assert agent.stop() == 0
