"""What every MCP tool shares: annotations, argument types, and turning results into tool answers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from .errors import CrashfleetError
from .models import FanoutResult
from .progress import Progress
from .recent import links

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)
HARD_CAP_CHARS = 100_000  # ~25,000 tokens: no result is ever larger
VIEW_META = "crashfleet/view"  # a result's _meta key for what only its MCP Apps view draws

READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
REMOTE_READ = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True)
STARTS_WORK = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True)
STOPS_WORK = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True)

Pattern = Annotated[str, Field(description="Ansible host pattern")]
Timeout = Annotated[float | None, Field(description="seconds per host (default CRASHFLEET_HOST_DEADLINE, 30)")]


async def answer(call: Callable[[], Awaitable[M]]) -> CallToolResult:
    """Run a tool: compact JSON text, links to its outputs, structuredContent; our errors become tool errors."""
    try:
        result = await call()
    except CrashfleetError as exc:
        return error(str(exc))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the server must survive any tool bug
        log.exception("tool failed")
        return error(f"internal error: {type(exc).__name__}: {exc}")
    text = result.model_dump_json(exclude_none=True)
    if len(text) > HARD_CAP_CHARS:
        result, text = shrink(result)
    data = result.model_dump(mode="json")
    extra = getattr(result, "view", None)  # for a view's eyes only (controller/views)
    return CallToolResult(
        content=[TextContent(type="text", text=text), *links(data)],
        structured_content=data,
        _meta={VIEW_META: extra} if extra else None,
    )


def shrink(result: M) -> tuple[M, str]:
    """Last guard of the hard cap: drop trailing groups, saying so."""
    if isinstance(result, FanoutResult):
        dropped = 0
        while result.groups and len(result.model_dump_json(exclude_none=True)) > HARD_CAP_CHARS:
            result.groups.pop()
            dropped += 1
        result.note = f"{dropped} group(s) left out to stay under the size cap; narrow the pattern"
    text = result.model_dump_json(exclude_none=True)
    return result, text[:HARD_CAP_CHARS]


def error(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


async def sync(fn: Callable[..., M], *args: Any, **kwargs: Any) -> M:
    return fn(*args, **kwargs)


def progress(ctx: Context) -> Progress:
    async def report(done: float, total: int, message: str) -> None:
        await ctx.report_progress(done, total, message)

    return report
