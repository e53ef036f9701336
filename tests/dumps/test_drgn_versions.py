"""Which drgn the agent uses, on a real agent: Debian's python3-drgn 0.0.22 (apt) against the
current drgn from PyPI (this venv's), both really run on the fixture's dump."""

from __future__ import annotations

import sys
from typing import Any

from crashfleet.agent.dumps import drgn_pick
from tests.dumps.agentproc import alive

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian 12's python3-drgn is 0.0.22


def test_the_system_drgn_is_the_old_one() -> None:
    """The premise of the tests below, checked rather than assumed."""
    old = drgn_pick.probe(SYSTEM_PYTHON)
    assert old["importable"], f"{SYSTEM_PYTHON} cannot import drgn: apt-get install python3-drgn ({old})"
    assert not old["recent"] and drgn_pick.version_key(old["version"]) < drgn_pick.version_key("0.0.30")
    current = drgn_pick.probe(sys.executable)
    assert current["recent"] and current["libkdumpfile"], current


def test_facts_and_dumps_list_report_the_drgn_picked(start: Any) -> None:
    agent, _ = start({})
    drgn = agent.result("facts")["tools"]["drgn"]
    assert drgn["present"] and drgn["python"] == sys.executable and drgn["recent"], drgn
    assert drgn["version"] == drgn_pick.probe(sys.executable)["version"] and drgn["libkdumpfile"] is True
    passed_over = {o["python"]: o for o in drgn["others"]}
    assert passed_over[SYSTEM_PYTHON]["version"].startswith("0.0.22") and not passed_over[SYSTEM_PYTHON]["recent"]
    listed = agent.result("dumps.list")["drgn"]
    assert listed["python"] == sys.executable and listed["version"] == drgn["version"]
    assert agent.stop() == 0


def test_old_drgn_is_named_at_open_with_what_works(start: Any) -> None:
    agent, vmcore = start({"drgn_python": SYSTEM_PYTHON})
    facts = agent.result("facts")["tools"]["drgn"]
    assert facts["python"] == SYSTEM_PYTHON and not facts["recent"] and "drgn==" in facts["hint"]
    opened = agent.result("dumps.open", vmcore=vmcore)
    assert "sysrq triggered crash" in opened["page"]["text"]  # crash still works
    old = [w for w in opened["warnings"] if "cannot read this elf dump" in w]
    assert old, opened["warnings"]
    assert "drgn 0.0.22" in old[0] and SYSTEM_PYTHON in old[0] and "recursive address translation" in old[0]
    assert f"drgn >= {drgn_pick.MIN_VERSION}" in old[0] and f"drgn=={drgn_pick.PINNED}" in old[0]
    refused = agent.error("dumps.drgn", session_id=opened["session_id"], code="prog['jiffies']")
    assert refused["data"]["kind"] == "drgn_too_old", refused
    assert "Traceback" not in refused["message"] and "/opt/crashfleet/drgn" in refused["data"]["hint"]
    session = agent.result("dumps.sessions")["sessions"][0]
    assert session["drgn_pid"] is None  # no worker left behind by the failed starts
    assert agent.stop() == 0
    assert not alive(session["crash_pid"])


def test_current_drgn_reads_the_same_dump(start: Any) -> None:
    agent, vmcore = start({"drgn_python": sys.executable})
    opened = agent.result("dumps.open", vmcore=vmcore)
    assert not [w for w in opened["warnings"] if "cannot read" in w], opened["warnings"]
    tasks = agent.result("dumps.drgn", session_id=opened["session_id"], code="len(list(for_each_task(prog)))")
    assert tasks["ok"] and int(tasks["value"]) > 40, tasks  # the guest's kernel threads and named tasks
    session = agent.result("dumps.sessions")["sessions"][0]
    assert agent.stop() == 0
    assert not alive(session["crash_pid"]) and not alive(session["drgn_pid"])
