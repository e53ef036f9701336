"""The client side of the MCP tasks extension (io.modelcontextprotocol/tasks, 2026-07-28) for the tests:
the SDK has no tasks, but it takes a ClientExtension that declares one and claims its result shape
(resultType "task"); tasks/get and tasks/cancel go out as plain requests through the SDK's session
(which stamps the per-request capabilities, and the Mcp-Name header over HTTP)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientSession
from mcp.types import CallToolResult, Request, RequestParams, Result
from pydantic import ConfigDict, Field

EXTENSION = "io.modelcontextprotocol/tasks"
TERMINAL = ("completed", "failed", "cancelled")


class TaskHandle(Result):
    """CreateTaskResult: Result & Task, resultType "task"."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None


class TaskState(Result):
    """GetTaskResult: a DetailedTask (with result, error or inputRequests by status)."""

    model_config = ConfigDict(extra="allow")
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None
    poll_interval_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class Ack(Result):
    model_config = ConfigDict(extra="allow")


class TaskParams(RequestParams):
    task_id: str = Field(alias="taskId")


class GetTask(Request[TaskParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param = "taskId"


class CancelTask(Request[TaskParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param = "taskId"


async def get(session: ClientSession, task_id: str) -> TaskState:
    return await session.send_request(GetTask(params=TaskParams(task_id=task_id)), TaskState)


async def cancel(session: ClientSession, task_id: str) -> Ack:
    return await session.send_request(CancelTask(params=TaskParams(task_id=task_id)), Ack)


class Tasks(ClientExtension):
    """Declares the extension; a task handle a call gets is polled to its end (unless the caller
    asks for the handle itself with allow_claimed=True)."""

    identifier = EXTENSION

    def claims(self) -> Sequence[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=TaskHandle, resolve=self._finish)]

    async def _finish(self, handle: TaskHandle, ctx: ClaimContext) -> CallToolResult:
        import anyio

        while True:
            state = await get(ctx.session, handle.task_id)
            if state.status in TERMINAL:
                assert state.result is not None, state
                return CallToolResult.model_validate(state.result)
            await anyio.sleep((state.poll_interval_ms or 1000) / 1000)  # as the server asks
