"""Hosts grouped by what killed them: one host's triage answer as an outcome keyed by its crash's
title, and a group's data merged from its hosts (kernel releases listed inside a group, never
splitting it). Pure functions, no I/O: crash_triage and `crashfleet triage --log` share them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from crashfleet.agent import protocol

from ..grouping import HostOutcome

MAX_NOTES = 6
NO_CRASH = "no crash found"
NO_REPORT = "no crash report in the log"
UNREADABLE = "log unreadable"


def outcome(host: str, answer: protocol.DumpTriage, output_ref: str | None = None) -> HostOutcome:
    """One host's triage answer as its fan-out outcome: keyed by its crash's title."""
    report = answer.get("report")
    tried = "; ".join(f"{t['source']}: {t['why']}" for t in answer.get("tried") or [])
    if report is None:
        if answer.get("dump") is None:  # no dump, no record, no crash in the previous boot's log
            data = {"title": None, "why": f"no dump, and nothing else kept a crash: {tried}"}
            return HostOutcome(host, "ok", key=NO_CRASH, data=data)
        dump = answer["dump"] or {}
        message = f"{UNREADABLE} for {dump.get('path')}: tried {tried}"
        hint = "crash_open on this host reads the dump itself; dumps_list says what debuginfo it has"
        return HostOutcome(host, "failed", key=UNREADABLE, message=message, hint=hint)
    data = host_data(answer, report)
    key = str(report.get("title") or NO_REPORT)
    if answer.get("stale"):
        key = f"earlier boot: {key}"
    return HostOutcome(host, "ok", key=key, data=data, output_id=output_ref)


def host_data(answer: protocol.DumpTriage, report: protocol.Report) -> dict[str, Any]:
    dump = answer.get("dump") or {}
    return {
        "title": report.get("title") or None,
        "kind": report.get("kind"),
        "culprit": report.get("culprit"),
        "module": report.get("culprit_module"),
        "frames": list(report.get("frames") or []),
        "modules": list(report.get("modules") or []),
        "taint": report.get("taint"),
        "detail": report.get("detail"),
        "release": dump.get("release"),
        "vmcore": dump.get("path"),
        "source": answer.get("source"),
        "stale": answer.get("stale"),
        "oopses": report.get("oopses", 0),
        "truncated": bool(report.get("truncated")),
        "notes": list(report.get("notes") or []),
    }


def merge(members: list[HostOutcome]) -> dict[str, Any]:
    """A group's data: the title and culprit frames they share, the kernels, sources and notes of
    all its hosts, and how to drill down on one of them."""
    datas = [m.data or {} for m in members]
    first = datas[0]
    if "why" in first:  # the hosts with nothing to report
        return {"title": None, "why": first["why"]}
    merged: dict[str, Any] = {k: first.get(k) for k in ("title", "kind", "culprit", "module", "frames", "modules")}
    merged["releases"] = sorted({d["release"] for d in datas if d.get("release")})
    merged["sources"] = dict(Counter(str(d.get("source")) for d in datas))
    merged["taint"] = sorted({d["taint"] for d in datas if d.get("taint")})
    notes = _notes(datas)
    if notes:
        merged["notes"] = notes
    if first.get("stale"):
        merged["stale"] = first["stale"]
    with_dump = next(((m.host, d) for m, d in zip(members, datas) if d.get("vmcore")), None)
    if with_dump is not None:
        host, data = with_dump
        merged["drill_down"] = f"crash_open(host={host!r}, vmcore={data['vmcore']!r}), then crash_run(session, 'bt')"
    return merged


def dumps(outcomes: list[HostOutcome]) -> dict[str, str]:
    """host -> the dump its title came from, for the hosts that have one (crash_open opens it)."""
    return {o.host: str(o.data["vmcore"]) for o in outcomes if o.data and o.data.get("vmcore")}


def _notes(datas: list[dict[str, Any]]) -> list[str]:
    """What a person should know before trusting the title: cut-off logs, later reports."""
    notes: list[str] = []
    cut = sum(1 for d in datas if d.get("truncated"))
    if cut:
        notes.append(f"{cut} host(s)' logs end inside the report: titled from what survived")
    more = sum(1 for d in datas if int(d.get("oopses") or 0) > 1)
    if more:
        notes.append(f"{more} host(s) logged more reports after the first (the first is the cause)")
    for data in datas:
        for note in data.get("notes") or []:
            if note not in notes and len(notes) < MAX_NOTES:
                notes.append(note)
    return notes


def group_files(reports: dict[str, protocol.Report]) -> list[dict[str, Any]]:
    """Kernel log files grouped by their crash's title (`crashfleet triage --log`), largest group
    first; files whose log holds no report are one group with no title."""
    groups: dict[str | None, dict[str, Any]] = {}
    for path, report in reports.items():
        title = report.get("title") or None
        group = groups.get(title)
        if group is None:
            group = groups[title] = {
                "title": title,
                "kind": report.get("kind"),
                "culprit": report.get("culprit"),
                "frames": list(report.get("frames") or []),
                "modules": list(report.get("modules") or []),
                "files": [],
                "notes": [],
            }
        group["files"].append(path)
        for note in report.get("notes") or []:
            if note not in group["notes"] and len(group["notes"]) < MAX_NOTES:
                group["notes"].append(f"{path}: {note}" if len(reports) > 1 else note)
    return sorted(groups.values(), key=lambda g: (g["title"] is None, -len(g["files"])))
