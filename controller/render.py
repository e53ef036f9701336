"""Plain-text rendering for people at a terminal: a progress bar and grouped tables."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from .models import FanoutResult, HostList

BAR_WIDTH = 30


class ProgressBar:
    """A one-line bar on a TTY; nothing when output is piped (no noise in logs)."""

    def __init__(self, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.enabled = stream.isatty()

    async def __call__(self, progress: float, total: int, message: str) -> None:
        if not self.enabled or total == 0:
            return
        done = int(progress)  # hosts finished; the fraction is a running host's own progress
        filled = BAR_WIDTH * done // total
        line = f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} {message[:40]:<40}"
        self.stream.write(line)
        if done == total:
            self.stream.write("\r" + " " * len(line) + "\r")
        self.stream.flush()


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def render_hosts(result: HostList) -> str:
    rows = [["HOST", "ADDRESS", "USER", "GROUPS"]]
    rows += [
        [h.name, h.address + (f":{h.port}" if h.port else ""), h.user or "-", ",".join(h.groups) or "-"]
        for h in result.details
    ]
    return f"{result.count} host(s): {result.hosts}\n\n{table(rows)}" + (f"\n\n{result.note}" if result.note else "")


def render_fanout(result: FanoutResult) -> str:
    s = result.summary
    head = (
        f"{s.total} host(s) in {s.elapsed_ms} ms: {s.ok} ok, {s.failed} failed, "
        f"{s.unreachable} unreachable, {s.timeout} timeout" + (f", {s.running} running" if s.running else "")
    )
    parts = [head]
    for group in result.groups:
        parts.append(f"\n== {group.hosts} ({group.count}) {group.status}")
        if group.data is not None:
            parts.append(_render_data(group.data))
        elif group.output:
            parts.append(group.output.rstrip())
    if result.errors:
        parts.append("\nErrors:")
        parts += [
            f"  {e.host}: {e.status}: {e.message}" + (f"\n    hint: {e.hint}" if e.hint else "") for e in result.errors
        ]
    if result.note:
        parts.append(f"\n{result.note}")
    return "\n".join(parts)


def _render_data(data: dict[str, Any]) -> str:
    rows = [
        [key, value if isinstance(value, str) else json.dumps(value, sort_keys=True)] for key, value in data.items()
    ]
    return table(rows) if rows else "(no data)"
