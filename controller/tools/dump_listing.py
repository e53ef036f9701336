"""dumps_list's answer for one host, and hosts whose listings agree folded into one group.

Two hosts' listings agree when their dumps have the same format, arch, kernel, debuginfo state and
crash title: paths that differ only by the host's name or address and the dump's time are no
difference ("/var/crash/{ip}-{time}/vmcore"), and sizes and times are summed up per group (the
newest, the size range). A group of one host shows its own paths, sizes and times. Pure functions.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

from crashfleet.agent import protocol
from crashfleet.inventory import Host

from ..grouping import HostOutcome

# A run of digits and separators holding 8 digits or more: a time (2026-11-21-03:12:40,
# 202611210312), or kdump-tools' IP-and-time dir name (127.0.0.1-2026-11-21-03:12:40). A kernel
# release (6.1.0-57) has fewer digits and stays.
STAMP = re.compile(r"\d[\d:._T-]*\d")
STAMP_DIGITS = 8
EXACT = ("path", "size", "mtime", "build_id", "dmesg")  # what only a single host's group shows


def outcome(host: Host, found: protocol.DumpList) -> HostOutcome:
    """One host's listing: grouped by its host-independent form, with its own details in data."""
    dumps = [_entry(d, host) for d in found["dumps"]]
    drgn = _drgn_line(found["drgn"])
    text = "\n".join(_line(d) for d in dumps) or f"no dumps in {', '.join(_generic(p, host) for p in found['dirs'])}"
    text += f"\n{drgn}" + ("" if found["crash"] else "\ncrash: not installed")
    skipped = [f"{s['dir']}: {s['reason']}" for s in found["skipped"]]
    if skipped:
        text += "\nskipped: " + "; ".join(skipped)
    data = {"dumps": dumps, "drgn": bool(found["drgn"].get("importable")), "crash": found["crash"]}
    key = hashlib.sha256(text.encode()).hexdigest()
    return HostOutcome(host.name, "ok", key=key, output=text, data=data)


def merge(members: list[HostOutcome]) -> dict[str, Any]:
    """One host: its own listing. Several: the listing they share, with the newest dump's time
    and the size range over all of them."""
    first = members[0].data or {}
    if len(members) == 1:
        return first
    dumps = [d for m in members for d in (m.data or {}).get("dumps", [])]
    shared = [{k: v for k, v in d.items() if k not in EXACT} for d in first.get("dumps", [])]
    merged: dict[str, Any] = {"dumps": shared, "drgn": first.get("drgn"), "crash": first.get("crash")}
    if dumps:
        merged["newest"] = time.strftime("%Y-%m-%d %H:%M", time.localtime(max(d["mtime"] for d in dumps)))
        merged["size_mib"] = [min(d["size"] for d in dumps) >> 20, max(d["size"] for d in dumps) >> 20]
    return merged


def _entry(dump: protocol.DumpEntry, host: Host) -> dict[str, Any]:
    log = dump.get("dmesg") or {}
    return {
        "path": dump["path"],
        "where": _generic(dump["path"], host),
        "size": dump["size"],
        "mtime": dump["mtime"],
        "format": dump["format"],
        "arch": dump.get("arch"),
        "release": dump.get("release"),
        "build_id": dump.get("build_id"),
        "debuginfo": _debuginfo(dump.get("debuginfo") or protocol.Debuginfo()),
        "incomplete": bool(dump.get("incomplete")),
        "title": log.get("title"),
        "dmesg": log.get("path"),
    }


def _line(d: dict[str, Any]) -> str:
    line = f"{d['where']}  {d['format']} {d['arch']} {d['release']}  debuginfo: {d['debuginfo']}"
    if d["incomplete"]:
        line += "  (incomplete)"
    if d["title"]:  # kdump's saved log named the crash without opening the dump
        line += f"\n  crash: {d['title']} (from kdump's dmesg file)"
    return line


def _generic(path: str, host: Host) -> str:
    """The path with this host's names and the dump's time replaced: the same on every host."""
    for name in sorted({host.name, host.address}, key=len, reverse=True):
        if name:
            path = path.replace(name, "{host}")
    return STAMP.sub(lambda m: "{time}" if sum(c.isdigit() for c in m.group()) >= STAMP_DIGITS else m.group(), path)


def _debuginfo(debug: protocol.Debuginfo) -> str:
    """local | via debuginfod (cached | fetched at crash_open from URL) | missing (what to install)."""
    if debug.get("source") == "debuginfod":
        if debug.get("present"):
            return "via debuginfod (cached)"
        return f"via debuginfod (fetched at crash_open from {', '.join(debug.get('servers') or [])})"
    if debug.get("present"):
        return "local"
    return f"missing ({debug.get('package_hint') or debug.get('hint')})"


def _drgn_line(drgn: protocol.DrgnInfo) -> str:
    if not drgn.get("importable"):
        return f"drgn: none ({drgn.get('hint') or drgn.get('error')})"
    kdump = "with" if drgn.get("libkdumpfile") else "without"
    old = "" if drgn.get("recent") else f"; too old: {drgn.get('hint')}"
    return f"drgn {drgn['version']} ({kdump} libkdumpfile){old}"
