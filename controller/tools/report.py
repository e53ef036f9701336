"""report_build: the incident write-up as one HTML file."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.types import CallToolResult
from pydantic import Field

from ..report.build import ReportResult, report_build
from ..runtime import Runtime
from ..wiring import STARTS_WORK, answer


def register(mcp: MCPServer, rt: Runtime) -> None:
    @mcp.tool(
        name="report_build",
        description="Write an incident report (one offline HTML file): facts, triage, "
        "bpftrace charts, capture problems, timeline.",
        annotations=STARTS_WORK,
    )
    async def report_build_tool(
        title: str,
        include: Annotated[
            list[str], Field(description="job ids (J3), session and output ids (HOST:ID) from tool results")
        ],
    ) -> Annotated[CallToolResult, ReportResult]:
        return await answer(lambda: report_build(rt, title, include))
