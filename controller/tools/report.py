"""report_build: the incident write-up as one HTML file (controller/report/)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from ..registry import tool
from ..report import build
from ..report.build import ReportResult
from ..runtime import Runtime
from ..wiring import STARTS_WORK
from .common import single

Include = Annotated[
    list[str] | None, Field(description="job ids (J3), session and output ids (HOST:ID); none: all of this session")
]


@tool(
    "Build an incident report",
    "Write an incident report (one offline HTML file): facts, triage, bpftrace charts, capture problems, timeline.",
    STARTS_WORK,
)
async def report_build(rt: Runtime, title: str, include: Include = None) -> ReportResult:
    ids = include if include is not None else build.session_ids(rt)
    build.check(title, ids)  # refused now, not in a job

    def still(job_id: str) -> ReportResult:
        return ReportResult(job_id=job_id, summary=f"still gathering: job_status('{job_id}') gives the report's path")

    return await single(rt, "report_build", "controller", lambda _: build.report_build(rt, title, ids), still)
