"""The host policy's dump keys, enforced by a real agent (the zipapp) started with --policy FILE.

The controller never chooses a host's policy file, so these tests speak JSON-RPC to
the agent process directly, on pipes, as the controller's link would.
"""

from __future__ import annotations

import time
from typing import Any

from tests.dumps.agentproc import alive


def test_drgn_code_false_refuses_code_but_runs_bundled_scripts(start: Any) -> None:
    agent, vmcore = start({"drgn_code": False})
    opened = agent.result("dumps.open", vmcore=vmcore)
    sid = opened["session_id"]
    assert "sysrq triggered crash" in opened["page"]["text"]
    refused = agent.error("dumps.drgn", session_id=sid, code="1 + 1")
    assert refused["data"]["kind"] == "policy_denied" and "drgn_code: false" in refused["message"]
    assert "analysis_run" in refused["data"]["hint"]
    sent = agent.error("dumps.script", session_id=sid, name="mine", code="print(prog['jiffies'])")
    assert sent["data"]["kind"] == "policy_denied" and "panic_summary" in sent["data"]["hint"]
    assert agent.result("dumps.scripts")["drgn_code"] is False
    summary = agent.result("dumps.script", session_id=sid, name="panic_summary")
    assert summary["ok"] and "sysrq triggered crash" in summary["page"]["text"]
    info = agent.result("dumps.sessions")["sessions"][0]
    assert agent.stop() == 0
    assert not alive(info["crash_pid"]) and not alive(info["drgn_pid"])


def test_drgn_worker_over_its_timeout_is_killed_and_idle_sessions_are_reaped(start: Any) -> None:
    idle = 5.0
    agent, vmcore = start({"dump_session_idle": idle})
    sid = agent.result("dumps.open", vmcore=vmcore)["session_id"]
    agent.result("dumps.drgn", session_id=sid, code="kept = 41")
    first = agent.result("dumps.sessions")["sessions"][0]["drgn_pid"]
    assert alive(first)

    spin = agent.result("dumps.drgn", session_id=sid, code="while True: pass", timeout=1)
    assert spin["ended"] == "killed" and spin["ok"] is False
    assert "ran over 1s" in spin["note"] and "namespace is lost" in spin["note"]
    assert not alive(first)
    lost = agent.result("dumps.drgn", session_id=sid, code="kept + 1")
    assert lost["ok"] is False and "NameError" in lost["error"]  # a new worker, a new namespace
    session = agent.result("dumps.sessions")["sessions"][0]
    assert alive(session["drgn_pid"]) and session["drgn_pid"] != first and alive(session["crash_pid"])

    deadline = time.monotonic() + idle + 60
    # The reaper drops the session from the list, then kills its processes: wait for both.
    while agent.result("dumps.sessions")["sessions"] or alive(session["crash_pid"]) or alive(session["drgn_pid"]):
        assert time.monotonic() < deadline, "the idle session was never closed, or its processes live on"
        time.sleep(0.5)
    gone = agent.error("dumps.crash", session_id=sid, command="sys")
    assert gone["data"]["kind"] == "unknown_session" and "expired after 5s idle" in gone["message"]
    assert agent.stop() == 0
