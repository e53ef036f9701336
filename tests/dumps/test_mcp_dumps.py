"""The dump tools through a real MCP client over stdio, as Claude Desktop drives them."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dumps.conftest import DumpFleet
from tests.e2e.conftest import MODERN, StdioServer, error_text, structured, wait_for
from tests.helpers import pids_matching
from tests.rig import Rig

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def server(rig: Rig, dump_fleet: DumpFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioServer]:
    started = StdioServer(
        MODERN,
        rig,
        tmp_path_factory.mktemp("mcp-dumps"),
        CRASHFLEET_INVENTORY=str(dump_fleet.inventory),
        CRASHFLEET_HOST_DEADLINE="120",
    )
    yield started
    started.close()


def test_open_run_search_drgn_close_over_mcp(server: StdioServer, dump_fleet: DumpFleet) -> None:
    listed = structured(server.call("dumps_list", {"pattern": "web02:web05"}, timeout=120))
    assert listed["summary"]["ok"] == 2, listed

    opened = structured(server.call("crash_open", {"host": "web02"}, timeout=180))
    session_id = opened["session"]["session_id"]
    assert session_id.startswith("web02:") and "PANIC" in opened["summary"]["text"], opened

    bt = structured(server.call("crash_run", {"session_id": session_id, "command": "bt"}, timeout=120))
    assert "sysrq_handle_crash" in bt["text"], bt
    found = structured(server.call("output_search", {"output_id": bt["output_id"], "pattern": "sysrq_\\w+"}))
    assert found["matches"] and all(re.search(r"sysrq_\w+", m["text"]) for m in found["matches"])

    refused = server.call("crash_run", {"session_id": session_id, "command": "sys | sh"})
    assert refused.is_error and "pipe" in error_text(refused).lower()

    tasks = structured(
        server.call(
            "drgn_run",
            {
                "session_id": session_id,
                "code": "sorted({t.comm.string_().decode() for t in for_each_task(prog)} & {'cf-alpha', 'cf-beta'})",
            },
            timeout=120,
        )
    )
    assert "cf-alpha" in tasks["value"] and "cf-beta" in tasks["value"], tasks

    closed = structured(server.call("session_close", {"session_id": session_id}))
    assert closed["session_id"] == session_id, closed
    sessions = structured(server.call("sessions_list"))
    assert session_id not in [entry["session_id"] for entry in sessions["sessions"]], sessions


def job_answer(server: StdioServer, job_id: str) -> dict[str, object]:
    """job_status until the job's work ended: the one host's answer, as data of its group."""
    while True:
        status = structured(server.call("job_status", {"job_id": job_id}))
        if not status["summary"]["running"]:
            [group] = status["groups"]
            assert group["status"] == "ok", status
            return dict(group["data"])
        time.sleep(0.5)  # polling the job, as a client does


def test_past_the_calls_budget_an_open_and_a_drgn_run_answer_with_their_job(
    rig: Rig, dump_fleet: DumpFleet, tmp_path: Path
) -> None:
    """crash takes seconds to open a dump, and this drgn code sleeps: both outlast a 1 s budget."""
    hurried = StdioServer(
        MODERN, rig, tmp_path / "home", CRASHFLEET_INVENTORY=str(dump_fleet.inventory), CRASHFLEET_CALL_BUDGET="1"
    )
    try:
        opening = structured(hurried.call("crash_open", {"host": "web03"}, timeout=60))
        assert opening["session"] is None and opening["job_id"] and "job_status" in opening["note"], opening
        opened = job_answer(hurried, opening["job_id"])
        session = opened["session"]
        assert isinstance(session, dict) and session["session_id"].startswith("web03:"), opened
        code = "import time; time.sleep(3); len(list(for_each_task(prog)))"
        running = structured(hurried.call("drgn_run", {"session_id": session["session_id"], "code": code}, timeout=60))
        assert running["ended"] == "running" and running["job_id"], running
        ran = job_answer(hurried, running["job_id"])
        assert ran["ok"] and int(str(ran["value"])) > 40, ran
        hurried.call("session_close", {"session_id": session["session_id"]})
    finally:
        hurried.close()


def test_closing_the_client_leaves_no_crash_or_drgn(server: StdioServer, dump_fleet: DumpFleet) -> None:
    opened = structured(server.call("crash_open", {"host": "web04"}, timeout=180))
    structured(server.call("drgn_run", {"session_id": opened["session"]["session_id"], "code": "1 + 1"}, timeout=120))
    vmcore = str(dump_fleet.paths["web04"])
    sessions = pids_matching(vmcore)  # crash and the drgn worker both name the dump in their argv
    assert len(sessions) >= 2, sessions
    server.close()  # stdin EOF: the server closes its links, each agent stops what it started
    assert wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in sessions), 30), (
        f"outlived the client: {pids_matching(vmcore)}"
    )
