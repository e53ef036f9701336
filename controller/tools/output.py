"""output_page, output_search: read outputs where they lie, on their host."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any

from pydantic import Field

from crashfleet.agent import protocol

from ..errors import BadParams, StoreRefused, UsageError
from ..models import Page, SearchMatch, SearchResult
from ..registry import tool
from ..runtime import Runtime
from ..wiring import REMOTE_READ
from .common import page_answer, split_ref


@tool(
    "Read an output",
    "Read a stored output page by page (output_id from a result; cursor from the last page).",
    REMOTE_READ,
)
async def output_page(rt: Runtime, output_id: str, cursor: str | None = None) -> Page:
    """One page of a stored output; pass next_cursor back for the next one."""
    host_name, agent_id = split_ref(output_id)
    host = rt.fleet.host(host_name)
    params = {"output_id": agent_id, "cursor": cursor, "max_bytes": rt.settings.page_chars}
    page: protocol.Page = await _agent(rt.fleet.call(host, protocol.PAGE, params), output_id)
    return page_answer(host_name, page)


@tool("Search an output", "Regex-search a stored output on its host; returns matching lines with context.", REMOTE_READ)
async def output_search(
    rt: Runtime,
    output_id: str,
    pattern: Annotated[str, Field(description="Python regex")],
    context: int = 0,
    max_matches: int = 50,
    cursor: Annotated[str | None, Field(description="resume a search")] = None,
) -> SearchResult:
    """Regex search run on the host; only matching lines (with context) come back."""
    if not 0 <= context <= 20:
        raise UsageError(f"context must be 0..20 lines, got {context}")
    if not 1 <= max_matches <= 1000:
        raise UsageError(f"max_matches must be 1..1000, got {max_matches}")
    host_name, agent_id = split_ref(output_id)
    host = rt.fleet.host(host_name)
    params = {
        "output_id": agent_id,
        "pattern": pattern,
        "context": context,
        "max_matches": max_matches,
        "cursor": cursor,
    }
    found: protocol.SearchResult = await _agent(rt.fleet.call(host, protocol.SEARCH, params), output_id)
    matches = [SearchMatch(**m) for m in found["matches"]]
    matches, note = _fit(matches, rt.settings.page_chars)
    return SearchResult(
        output_id=output_id,
        host=host_name,
        pattern=pattern,
        matches=matches,
        scanned_lines=found["scanned_lines"],
        total_lines=found["total_lines"],
        more=found["more"] or note is not None,
        next_cursor=found.get("next_cursor") if note is None else None,
        note=note,
    )


async def _agent(call: Awaitable[Any], output_id: str) -> Any:
    """Agent store errors become usage errors: the caller passed a bad id or cursor."""
    try:
        return await call
    except (StoreRefused, BadParams) as exc:
        raise UsageError(f"{exc.message} (output_id {output_id})", exc.hint) from exc


def _fit(matches: list[SearchMatch], budget: int) -> tuple[list[SearchMatch], str | None]:
    used = 0
    for index, match in enumerate(matches):
        used += len(match.text) + sum(len(x) for x in match.before + match.after) + 40
        if used > budget:
            return matches[:index], f"cut to {index} matches to fit the page budget; narrow the pattern"
    return matches, None
