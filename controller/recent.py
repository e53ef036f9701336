"""Output URIs, resource links in tool results, and the recent outputs resources/list shows."""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from mcp.types import Resource, ResourceLink

from .icon import icons

SCHEME = "crashfleet"
RECENT = 100  # resources/list shows this many of the newest outputs
LINKS_PER_RESULT = 10  # a fan-out names many identical outputs: link a few, not all


def output_uri(ref: str, cursor: str | None = None) -> str:
    """HOST:ID (as tools return it) -> crashfleet://HOST/output/ID[?cursor=...]."""
    host, _, local_id = ref.rpartition(":")
    uri = f"{SCHEME}://{quote(host, safe='')}/output/{quote(local_id, safe='')}"
    return uri + (f"?{urlencode({'cursor': cursor})}" if cursor else "")


def links(structured: dict[str, Any]) -> list[ResourceLink]:
    """Resource links to the outputs a tool result names (its output_id / output_ids fields)."""
    refs: list[str] = []
    _collect(structured, refs)
    unique = list(dict.fromkeys(refs))[:LINKS_PER_RESULT]
    return [
        ResourceLink(uri=output_uri(ref), name=ref, title=f"output on {ref.rpartition(':')[0]}", mime_type="text/plain")
        for ref in unique
    ]


def _collect(value: Any, refs: list[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "output_id" and isinstance(item, str) and item.rpartition(":")[0]:
                refs.append(item)
            elif key == "output_ids" and isinstance(item, list) and item and isinstance(item[0], str):
                refs.append(item[0])  # identical outputs: one is enough
            else:
                _collect(item, refs)
    elif isinstance(value, list):
        for item in value:
            _collect(item, refs)


@dataclass
class Seen:
    ref: str
    tool: str
    when: float


class RecentOutputs:
    """The outputs tool results linked to, newest last; what resources/list shows."""

    def __init__(self, limit: int = RECENT) -> None:
        self.limit = limit
        self._seen: OrderedDict[str, Seen] = OrderedDict()

    def add(self, ref: str, tool: str) -> None:
        self._seen.pop(ref, None)
        self._seen[ref] = Seen(ref, tool, time.time())
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)

    def all(self) -> list[Seen]:
        return list(self._seen.values())

    def resources(self) -> list[Resource]:
        return [_resource(seen) for seen in reversed(self._seen.values())]


def _resource(seen: Seen) -> Resource:
    host = seen.ref.rpartition(":")[0]
    stamp = time.strftime("%H:%M:%S", time.localtime(seen.when))
    return Resource(
        uri=output_uri(seen.ref),
        name=seen.ref,
        title=f"{seen.tool} output on {host}",
        description=f"stored on {host} at {stamp}; read page by page",
        mime_type="text/plain",
        icons=icons(),
    )


ID_KEYS = ("job_id", "output_id", "output_ids", "session_id", "sessions")
KEPT_TOOLS = (
    "fleet_check",
    "fleet_run",
    "bpftrace_run",
    "bpftrace_result",
    "crash_triage",
    "job_status",
    "crash_open",
    "crash_run",
    "drgn_run",
    "analysis_run",
    "capture_start",
    "capture_summary",
)


@dataclass
class Kept:
    tool: str
    data: dict[str, Any]
    ids: set[str]
    when: float


class RecentResults:
    """The last structured answers of the tools a report draws on, found again by the ids they name."""

    def __init__(self, limit: int = 50) -> None:
        self.limit = limit
        self.kept: list[Kept] = []

    def add(self, tool: str, data: dict[str, Any]) -> None:
        if tool not in KEPT_TOOLS:
            return
        ids: set[str] = set()
        _ids(data, ids)
        self.kept = [*self.kept, Kept(tool, data, ids, time.time())][-self.limit :]

    def naming(self, ref: str) -> list[Kept]:
        return [kept for kept in self.kept if ref in kept.ids]


def _ids(value: Any, found: set[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ID_KEYS and isinstance(item, str):
                found.add(item)
            elif key in ID_KEYS and isinstance(item, list):
                found.update(i for i in item if isinstance(i, str))
            else:
                _ids(item, found)
    elif isinstance(value, list):
        for item in value:
            _ids(item, found)
