"""MCP tasks over stdio: the SDK client declares io.modelcontextprotocol/tasks (tests/client/tasks_client.py)
and drives real `crashfleet serve` processes on the dump fleet with CRASHFLEET_TASK_AFTER=1. A call done
by then answers as before; a longer one answers with a task handle backed by its fleet job: tasks/get
says working, then completed with the tool's own complete answer. Over stdio a reconnect is a new server
process: one SIGKILLed mid-trace is followed by one that completes the task (its agents kept the job);
one that exited cleanly stopped its jobs, and the task then answers failed with the reason."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.types import CallToolResult

from tests.client.tasks_client import TERMINAL, TaskHandle, Tasks, TaskState, get
from tests.dumps.conftest import DumpFleet
from tests.e2e.conftest import MODERN, StdioServer, assert_no_agents, structured, wait_for
from tests.rig import Rig

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(600)]

TRACE = "tracepoint:sched:sched_switch { @switches = count(); }"
TASK_ENV = {"CRASHFLEET_TASK_AFTER": "1", "CRASHFLEET_HOST_DEADLINE": "120"}


def task_server(rig: Rig, home: Path, fleet: DumpFleet) -> StdioServer:
    return StdioServer(
        MODERN, rig, home, client={"extensions": [Tasks()]}, CRASHFLEET_INVENTORY=str(fleet.inventory), **TASK_ENV
    )


def handle(server: StdioServer, tool: str, args: dict[str, Any]) -> TaskHandle | CallToolResult:
    """The call's answer as it came: a task handle, or the tool's result."""
    return server.run(lambda: server.session.call_tool(tool, args, allow_claimed=True), timeout=120)  # type: ignore[no-any-return]


def poll(server: StdioServer, task_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 300) -> TaskState:
    """tasks/get until the task is in one of `statuses` (the server's own pace: pollIntervalMs)."""
    deadline = time.monotonic() + timeout
    while True:
        state: TaskState = server.run(lambda: get(server.session, task_id))
        if state.status in statuses:
            return state
        assert time.monotonic() < deadline, f"task still {state.status} after {timeout:g} s: {state.status_message}"
        time.sleep(min(1.0, (state.poll_interval_ms or 1000) / 1000))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def servers(rig: Rig, home: Path, dump_fleet: DumpFleet) -> Iterator[list[StdioServer]]:
    started: list[StdioServer] = []
    yield started
    for server in started:
        server.close()
    assert_no_agents(rig, timeout=30)


def test_a_call_done_in_time_answers_as_before(
    rig: Rig, home: Path, dump_fleet: DumpFleet, servers: list[StdioServer]
) -> None:
    server = task_server(rig, home, dump_fleet)
    servers.append(server)
    answer = handle(server, "fleet_hosts", {"pattern": "web"})
    assert isinstance(answer, CallToolResult) and structured(answer)["count"] == 6, answer


def test_a_long_fan_out_is_a_task_whose_result_is_the_tool_s_complete_answer(
    rig: Rig,
    home: Path,
    dump_fleet: DumpFleet,
    servers: list[StdioServer],
) -> None:
    server = task_server(rig, home, dump_fleet)
    servers.append(server)
    task = handle(server, "fleet_run", {"pattern": "web01:web02", "command": "vmstat", "duration": 4})
    assert isinstance(task, TaskHandle) and task.status == "working", task
    job_id = (task.meta or {}).get("crashfleet/job_id")
    assert job_id and job_id in (task.status_message or ""), task
    working = server.run(lambda: get(server.session, task.task_id))
    assert working.status in ("working", "completed") and working.created_at == task.created_at, working
    done = poll(server, task.task_id)
    assert done.status == "completed" and done.result is not None, done
    result = CallToolResult.model_validate(done.result)
    answer = structured(result)
    assert answer["summary"]["ok"] == 2 and {g["hosts"] for g in answer["groups"]} <= {"web01", "web02", "web[01-02]"}
    assert all("procs" in (g["output"] or "") for g in answer["groups"]), answer["groups"]  # vmstat's own header
    same = structured(server.call("job_status", {"job_id": job_id}))  # the job behind it, as job_status has it
    assert same["summary"] == answer["summary"], (same["summary"], answer["summary"])


def test_a_single_operation_s_task_answers_in_the_tool_s_own_shape(
    rig: Rig,
    home: Path,
    dump_fleet: DumpFleet,
    servers: list[StdioServer],
) -> None:
    server = task_server(rig, home, dump_fleet)
    servers.append(server)
    task = handle(server, "crash_open", {"host": "web02", "vmcore": str(dump_fleet.paths["web02"])})
    assert isinstance(task, TaskHandle), task  # crash takes seconds to read a dump
    done = poll(server, task.task_id)
    assert done.status == "completed" and done.result, done
    opened = structured(CallToolResult.model_validate(done.result))
    assert opened["session"]["host"] == "web02" and "panic" in opened["summary"]["text"].lower(), opened


def test_a_controller_killed_mid_trace_is_followed_by_one_that_completes_the_task(
    rig: Rig,
    home: Path,
    dump_fleet: DumpFleet,
    servers: list[StdioServer],
) -> None:
    first = task_server(rig, home, dump_fleet)
    servers.append(first)
    task = handle(first, "bpftrace_run", {"pattern": "web01:web02", "program": TRACE, "duration": 8})
    assert isinstance(task, TaskHandle) and task.status == "working", task
    os.kill(first.server_pid, signal.SIGKILL)  # no goodbye: the agents keep the job for its lease
    assert wait_for(lambda: not _alive(first.server_pid), 10)
    first.close()
    second = task_server(rig, home, dump_fleet)  # the same controller (its slot, its state), a new process
    servers.append(second)
    done = poll(second, task.task_id)
    assert done.status == "completed", done
    traced = structured(CallToolResult.model_validate(done.result))
    [switches] = [m for m in traced["maps"] if m["name"] == "@switches"]
    assert switches["hosts"] == "web[01-02]" and switches["value"] > 0, switches


def test_a_task_whose_work_ended_with_its_controller_answers_failed_with_the_reason(
    rig: Rig,
    home: Path,
    dump_fleet: DumpFleet,
    servers: list[StdioServer],
) -> None:
    first = task_server(rig, home, dump_fleet)
    servers.append(first)
    own = handle(first, "fleet_run", {"pattern": "web03", "command": "vmstat", "duration": 30})
    trace = handle(first, "bpftrace_run", {"pattern": "web03", "program": TRACE, "duration": 30})
    assert isinstance(own, TaskHandle) and isinstance(trace, TaskHandle), (own, trace)
    first.close()  # a clean exit stops its jobs on the hosts; its own work ends with it
    second = task_server(rig, home, dump_fleet)
    servers.append(second)
    gone = poll(second, own.task_id)
    assert gone.status == "failed" and "ended with the controller process" in (gone.status_message or ""), gone
    assert gone.error and gone.error["code"] == -32603 and gone.error["message"] == gone.status_message, gone
    stopped = poll(second, trace.task_id)  # the next agent on web03 says what became of it
    assert stopped.status == "failed" and "web03: job " in (stopped.status_message or ""), stopped
    assert "ended with an earlier agent" in (stopped.status_message or ""), stopped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
