"""report_build: gather, render, write the file; return where it is and what it holds."""

from __future__ import annotations

import re
import time
from pathlib import Path

from pydantic import BaseModel, Field

from ..errors import UsageError
from ..runtime import Runtime
from ..settings import state_dir
from .gather import ReportData, gather
from .page import render

MAX_INCLUDE = 200


class MissingId(BaseModel):
    id: str
    why: str


class ReportResult(BaseModel):
    path: str | None = Field(default=None, description="the HTML file; open it in a browser (works offline)")
    summary: str
    missing: list[MissingId] = Field(default_factory=list, description="ids not found (unknown or expired)")
    job_id: str | None = Field(
        default=None, description="still gathering when the call had to answer: job_status(job_id)"
    )


def check(title: str, include: list[str]) -> None:
    if not title.strip():
        raise UsageError("a report needs a title", "e.g. title='web latency 2026-12-01'")
    if len(include) > MAX_INCLUDE:
        raise UsageError(
            f"include at most {MAX_INCLUDE} ids, got {len(include)}",
            "job ids (J3), session and output ids (HOST:ID) as tools returned them; none: the whole session",
        )


async def report_build(rt: Runtime, title: str, include: list[str], path: Path | None = None) -> ReportResult:
    """One self-contained HTML file from the answers that name `include` (job, session and output ids)."""
    check(title, include)
    report = await gather(rt, title.strip(), include)
    target = path or _default_path(title)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(render(report), encoding="utf-8")
    tmp.replace(target)
    return ReportResult(
        path=str(target), summary=_summary(report), missing=[MissingId(id=ref, why=why) for ref, why in report.missing]
    )


def session_ids(rt: Runtime) -> list[str]:
    """Everything this server produced in the session, newest first, at most MAX_INCLUDE ids:
    the ids its answers named (triage sessions, jobs, outputs, captures), its jobs, its outputs."""
    ids = [ref for kept in reversed(rt.results.kept) for ref in sorted(kept.ids)]
    ids += [job.job_id for job in rt.jobs.newest_first()]
    ids += [seen.ref for seen in reversed(rt.outputs.all())]
    return list(dict.fromkeys(ids))[:MAX_INCLUDE]


def _default_path(title: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60] or "report"
    return state_dir() / "reports" / f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}.html"


def _summary(report: ReportData) -> str:
    parts = [f"{len(report.hosts)} host(s)"]
    counts = [
        (len(report.triage), "triage group(s)"),
        (len(report.maps), "bpftrace map(s)"),
        (len(report.captures), "capture(s)"),
        (len(report.sessions), "session(s)"),
        (len(report.outputs), "output(s)"),
        (len(report.timeline), "audited call(s)"),
    ]
    parts += [f"{n} {what}" for n, what in counts if n]
    if len(parts) == 1 and not report.hosts:
        parts = ["nothing yet: this session has produced no answers to report"]
    if report.missing:
        parts.append(f"{len(report.missing)} id(s) not found: {', '.join(ref for ref, _ in report.missing)}")
    return "; ".join(parts)
