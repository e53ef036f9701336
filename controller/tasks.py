"""MCP tasks (the io.modelcontextprotocol/tasks extension of protocol 2026-07-28): a long tool call
answered with a durable handle the client polls, backed by the fleet jobs job_status reads.

A client that declares the extension on its tools/call gets the answer as before when the work ends
within CRASHFLEET_TASK_AFTER seconds; else, in place of the partial answer, a task (resultType
"task") for the job the call left. tasks/get says working (how far it got), completed (the tool's
own complete answer, as the call would have returned it), cancelled, or failed (the job's work is
gone: its agent or the controller process that ran it ended, or a lease ran out: the reason is in
statusMessage). tasks/cancel is job_cancel: the job stops on every host. A client that does not
declare the extension sees today's answers.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver.server import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolRequestParams, CallToolResult, InputResponses, RequestParams
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from . import budget, task_results
from .jobs import ANSWER, FleetJob, JobState
from .runtime import Runtime
from .task_store import TaskRecord, TaskStore
from .tools.jobs import job_cancel

EXTENSION = "io.modelcontextprotocol/tasks"
POLL_MS = 2000  # fleet work moves in seconds
JOB_META = "crashfleet/job_id"  # the job behind a task: job_status and job_cancel reach it too


class TaskParams(RequestParams):
    task_id: str = Field(alias="taskId")


class UpdateParams(TaskParams):
    input_responses: InputResponses = Field(default_factory=dict, alias="inputResponses")


class Tasks(Extension):
    identifier = EXTENSION

    def __init__(self, rt: Runtime, store: TaskStore) -> None:
        self.rt, self.store = rt, store

    def methods(self) -> Sequence[MethodBinding]:
        modern = frozenset(MODERN_PROTOCOL_VERSIONS)
        return [
            MethodBinding("tasks/get", TaskParams, self.get, modern),
            MethodBinding("tasks/cancel", TaskParams, self.cancel, modern),
            MethodBinding("tasks/update", UpdateParams, self.update, modern),
        ]

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        if not opted_in(ctx):
            return await call_next(ctx)
        with budget.sooner(self.rt.settings.task_after):
            result = await call_next(ctx)
        job = self._job_left(params.name, result)
        if job is None:
            return result
        record = self.store.create(job.job_id, params.name)
        return {"resultType": "task", **await self._task(record)}

    async def get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        require_client_extension(ctx, EXTENSION)
        return {"resultType": "complete", **await self._task(self._record(params.task_id))}

    async def cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> HandlerResult:
        require_client_extension(ctx, EXTENSION)
        record = self._record(params.task_id)
        job = self.rt.jobs.jobs.get(record.job_id)
        if job is not None and job.state is JobState.RUNNING:
            await job_cancel(self.rt, job.job_id)  # every host's share of it stops
        return {"resultType": "complete"}

    async def update(self, ctx: ServerRequestContext[Any, Any], params: UpdateParams) -> HandlerResult:
        """No task of crashfleet waits for input (consent is asked before a task exists): the
        responses are for no outstanding request, and are ignored as the extension says."""
        require_client_extension(ctx, EXTENSION)
        self._record(params.task_id)
        return {"resultType": "complete"}

    def _record(self, task_id: str) -> TaskRecord:
        record = self.store.get(task_id)
        if record is None:
            raise MCPError(code=INVALID_PARAMS, message="Failed to retrieve task: Task not found")
        return record

    def _job_left(self, tool: str, result: Any) -> FleetJob | None:
        """The running job this call left for its complete answer, if any: its own unfinished work,
        or hosts still running whose answer a follow-up tool merges (job.detail result_tool)."""
        if not isinstance(result, CallToolResult) or result.is_error or not isinstance(result.structured_content, dict):
            return None
        job = self.rt.jobs.jobs.get(str(result.structured_content.get("job_id")))
        if job is None or job.tool != tool or job.state is not JobState.RUNNING:
            return None
        return job if job.kind == ANSWER or job.detail.get("result_tool") else None

    async def _task(self, record: TaskRecord) -> dict[str, Any]:
        state = await task_results.state(self.rt, record)
        self.store.moved(record, state.status)
        task: dict[str, Any] = {
            "taskId": record.task_id,
            "status": state.status,
            "statusMessage": state.message,
            "createdAt": _iso(record.created),
            "lastUpdatedAt": _iso(record.updated),
            "ttlMs": None,  # a task lives as long as its job in the registry
            "pollIntervalMs": POLL_MS,
            "_meta": {JOB_META: record.job_id},
        }
        if state.result is not None:
            task["result"] = state.result.model_dump(by_alias=True, mode="json", exclude_none=True)
            if isinstance(state.result.structured_content, dict):  # a report finds it by the ids it names
                self.rt.results.add(record.tool, state.result.structured_content)
        if state.status == "failed":
            task["error"] = {"code": INTERNAL_ERROR, "message": state.message}
        return task


def opted_in(ctx: ServerRequestContext[Any, Any]) -> bool:
    """This request (2026-07-28: capabilities ride every request) declared the tasks extension."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return False
    capabilities = ctx.session.client_capabilities
    return bool(capabilities and capabilities.extensions and EXTENSION in capabilities.extensions)


def _iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
