"""MCP tasks over streamable HTTP: a task outlives the client connection that started it (a second
connection polls it to its end, or cancels it, which stops the job on every host), and a client that
does not declare the extension gets today's answer (a job id) and no tasks/get."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

from tests.client.tasks_client import TERMINAL, TaskHandle, Tasks, TaskState, cancel, get
from tests.e2e.conftest import MODERN, HttpServer, structured
from tests.helpers import agent_pids, cmdline, descendants, wait_until
from tests.rig import Rig

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(300)]

TRACE = "tracepoint:sched:sched_switch { @switches = count(); }"


@asynccontextmanager
async def connected(server: HttpServer, tasks: bool = True) -> AsyncIterator[Client]:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {server.token}"})
    extensions = [Tasks()] if tasks else []
    async with (
        http,
        Client(streamable_http_client(server.url, http_client=http), mode=MODERN, extensions=extensions) as client,
    ):
        yield client


async def started(server: HttpServer, args: dict[str, Any]) -> TaskHandle:
    """A trace started as a task by a client that then goes away."""
    async with connected(server) as client:
        task = await client.session.call_tool("bpftrace_run", args, allow_claimed=True)
    assert isinstance(task, TaskHandle) and task.status == "working", task
    return task


async def until(client: Client, task_id: str, statuses: tuple[str, ...] = TERMINAL, timeout: float = 120) -> TaskState:
    deadline = time.monotonic() + timeout
    while (state := await get(client.session, task_id)).status not in statuses:
        assert time.monotonic() < deadline, state
        await anyio.sleep(min(1.0, (state.poll_interval_ms or 1000) / 1000))
    return state


def bpftraces(rig: Rig) -> list[int]:
    """bpftrace processes under this rig's agents."""
    return [child for child in descendants(agent_pids(str(rig.base))) if "bpftrace" in cmdline(child)]


@pytest.fixture
def server(http_servers: Callable[..., HttpServer]) -> HttpServer:
    return http_servers(secrets.token_urlsafe(24), CRASHFLEET_TASK_AFTER="1")


async def test_a_second_connection_polls_a_task_to_its_end(server: HttpServer) -> None:
    task = await started(server, {"pattern": "web01:web02", "program": TRACE, "duration": 4})
    async with connected(server) as client:
        done = await until(client, task.task_id)
    assert done.status == "completed" and done.created_at == task.created_at, done
    traced = structured(CallToolResult.model_validate(done.result))
    assert {m["name"] for m in traced["maps"]} == {"@switches"} and traced["summary"]["ok"] == 2, traced


async def test_a_second_connection_cancels_the_task_on_every_host(server: HttpServer, rig: Rig) -> None:
    task = await started(server, {"pattern": "web01:web02", "program": TRACE, "duration": 60})
    job_id = (task.meta or {})["crashfleet/job_id"]
    async with connected(server) as client:
        assert (await get(client.session, task.task_id)).status == "working"
        assert bpftraces(rig), "the trace is not running on the hosts"
        await cancel(client.session, task.task_id)
        cancelled = await until(client, task.task_id)
        status = structured(await client.call_tool("job_status", {"job_id": job_id}))
    assert cancelled.status == "cancelled" and cancelled.result is None, cancelled
    states = [g["output"] for g in status["groups"]] + [e["message"] for e in status["errors"]]
    assert status["summary"]["running"] == 0 and status["summary"]["total"] == 2, status
    assert await wait_until(lambda: not bpftraces(rig), 20), f"bpftrace left running: {bpftraces(rig)} {states}"


async def test_a_client_that_does_not_opt_in_gets_today_s_answer(server: HttpServer) -> None:
    async with connected(server, tasks=False) as client:
        answer = await client.call_tool("bpftrace_run", {"pattern": "web01", "program": TRACE, "duration": 20})
        running = structured(answer)
        assert running["job_id"] and "bpftrace_result" in running["note"], running
        with pytest.raises(MCPError) as refused:
            await get(client.session, "no-such-task")
        assert refused.value.error.code == -32021, refused.value.error
        await client.call_tool("job_cancel", {"job_id": running["job_id"]})
    async with connected(server) as client:
        with pytest.raises(MCPError) as unknown:
            await get(client.session, "no-such-task")
    assert unknown.value.error.code == -32602 and "not found" in unknown.value.error.message, unknown.value.error
