"""Terminal tables for triage, bpftrace and capture answers: what the MCP tools return, for a person."""

from __future__ import annotations

import json
from typing import Any

from .render import render_fanout, table
from .tools.bpftrace_models import BpftraceRun
from .tools.capture_models import CaptureSummary
from .tools.dumps_models import TriageResult


def render_triage(result: TriageResult) -> str:
    rows = [["HOSTS", "#", "PANIC", "TOP FRAMES"]]
    rows += [[g.hosts, str(g.count), g.panic or "-", " < ".join(g.frames[:4]) or "-"] for g in result.groups]
    parts = [f"{sum(g.count for g in result.groups)} host(s) with a dump in {len(result.groups)} group(s), "
             f"{result.elapsed_ms} ms", "", table(rows)]
    if result.no_dump:
        parts.append(f"\nno dump: {result.no_dump}")
    parts += [f"error: {e.host}: {e.message}" + (f" ({e.hint})" if e.hint else "") for e in result.errors]
    return "\n".join(parts)


def render_trace(result: BpftraceRun) -> str:
    parts = [render_fanout(result)]
    for merged in result.maps:
        figure = merged.value if merged.value is not None else f"p50 {merged.p50} p99 {merged.p99}"
        parts.append(f"\n{merged.name} ({merged.kind}) on {merged.hosts}: {figure}")
        if merged.histogram:
            top = max(b.count for b in merged.histogram) or 1
            parts.append(table([[f"[{b.min}, {b.max if b.max is not None else 'inf'})", str(b.count),
                                 "#" * max(1, 40 * b.count // top)] for b in merged.histogram]))
        for outlier in merged.outliers:
            parts.append(f"  outlier {outlier.host}: {outlier.why}")
    return "\n".join(parts)


def render_capture(result: CaptureSummary) -> str:
    parts = [f"capture {result.job_id} on {', '.join(sorted(result.hosts))}"]
    rows = [["#", "PROBLEM"]] + [[str(i), _line(p)] for i, p in enumerate(result.problems, 1)]
    parts += ["\nProblems, ranked:", table(rows) if result.problems else "none"]
    if result.lost_between_hosts:
        parts += ["\nLost between hosts:"] + [f"  {_line(loss)}" for loss in result.lost_between_hosts]
    parts += [f"error: {e.host}: {e.message}" for e in result.errors]
    return "\n".join(parts)


def _line(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True, default=str)[:200]
