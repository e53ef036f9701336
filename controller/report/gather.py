"""What a report holds: the answers tools gave that name the included ids, re-fetched where they live."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import CrashfleetError
from ..recent import Kept
from ..runtime import Runtime
from ..tools.bpftrace import bpftrace_result
from ..tools.capture import capture_summary
from ..tools.fleet import fleet_check
from ..tools.output import output_page

JOB_ID = re.compile(r"^J\d+$")
TIMELINE_MAX = 300


@dataclass
class ReportData:
    title: str
    facts: dict[str, Any] | None = None
    triage: list[dict[str, Any]] = field(default_factory=list)
    maps: list[dict[str, Any]] = field(default_factory=list)
    captures: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    hosts: set[str] = field(default_factory=set)


async def gather(rt: Runtime, title: str, include: list[str]) -> ReportData:
    report = ReportData(title)
    for ref in dict.fromkeys(include):
        kept = rt.results.naming(ref)
        for result in kept:
            _add_kept(report, ref, result)
        if not kept or not (JOB_ID.match(ref) or _is_session(ref, kept)):
            await _fetch(rt, report, ref, quiet=bool(kept))  # an output: its first page, from its host
    if report.hosts:
        report.facts = (await fleet_check(rt, ":".join(sorted(report.hosts)))).model_dump(mode="json")
    report.timeline = _timeline(rt, report.hosts)
    return report


def _add_kept(report: ReportData, ref: str, kept: Kept) -> None:
    data = kept.data
    if kept.tool == "crash_triage" or (kept.tool == "job_status" and _is_triage(data)):
        groups = [g for g in data.get("groups", []) if (g.get("data") or {}).get("title")]
        report.triage += [g for g in groups if g not in report.triage]
    elif kept.tool in ("bpftrace_run", "bpftrace_result"):
        report.maps += [m for m in data.get("maps", []) if m not in report.maps]
    elif kept.tool == "capture_summary" and data not in report.captures:
        report.captures.append(data)
    elif kept.tool == "crash_open" and data.get("session") not in report.sessions:
        report.sessions.append(data["session"])
    report.hosts |= _hosts_of(kept)


def _is_triage(data: dict[str, Any]) -> bool:
    """A job_status answer that is a crash_triage's complete answer."""
    return any("kind" in (g.get("data") or {}) and "culprit" in (g.get("data") or {}) for g in data.get("groups", []))


def _hosts_of(kept: Kept) -> set[str]:
    return {ref.rpartition(":")[0] for ref in kept.ids if ":" in ref}


def _is_session(ref: str, kept: list[Kept]) -> bool:
    return any(k.tool == "crash_open" and ref == (k.data.get("session") or {}).get("session_id") for k in kept)


async def _fetch(rt: Runtime, report: ReportData, ref: str, quiet: bool = False) -> bool:
    """A live job or an output on its host; else the id is listed as missing (unless `quiet`)."""
    try:
        if JOB_ID.match(ref):
            job = rt.jobs.get(ref)
            if job.tool == "bpftrace_run":
                report.maps += (await bpftrace_result(rt, ref)).model_dump(mode="json")["maps"]
            elif job.tool == "capture":
                report.captures.append((await capture_summary(rt, ref)).model_dump(mode="json"))
            else:
                raise CrashfleetError(f"a {job.tool} job: include its output ids instead")
            report.hosts |= set(job.host_jobs)
        else:
            page = await output_page(rt, ref)
            report.outputs.append(page.model_dump(mode="json"))
            report.hosts.add(page.host)
    except CrashfleetError as exc:
        if not quiet:
            report.missing.append((ref, str(exc)))
        return False
    return True


def _timeline(rt: Runtime, hosts: set[str]) -> list[dict[str, Any]]:
    """The audit log's calls on the report's hosts, oldest first (the last TIMELINE_MAX)."""
    path = rt.settings.audit_path()
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("host") in hosts:
            entries.append(entry)
    return entries[-TIMELINE_MAX:]
