"""MCP Apps views (the io.modelcontextprotocol/ui extension): the answers people would rather look
at, drawn in the client's sandboxed frame from the tool's own result.

Each view is one self-contained ui:// HTML page (no network, no CDN: its scripts are these files,
written by hand and inlined): the view's side of the Apps protocol (bridge.js), safe text helpers
(common.js) and its drawing code. A tool names its view in `_meta.ui.resourceUri`; a client without
Apps ignores that and shows the same compact text as before. What only a view draws (an outlier's
own histogram, the flame graph's stacks) rides the result's `_meta` (wiring.VIEW_META).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

from mcp.server.apps import Apps

PAGE_PARTS = ("bridge.js", "common.js")  # every view's scripts, before its own


@dataclass(frozen=True)
class View:
    name: str  # its script is NAME.js
    title: str
    tools: tuple[str, ...]  # the tools whose answers it draws

    @property
    def uri(self) -> str:
        return f"ui://crashfleet/{self.name}.html"


VIEWS = (
    View("triage", "Crash triage", ("crash_triage",)),
    View("histograms", "bpftrace histograms", ("bpftrace_run", "bpftrace_result")),
    View("flamegraph", "CPU flame graph", ("profile_run", "profile_result")),
    View("capture", "Capture problems", ("capture_summary",)),
    View("fleet", "Fleet check", ("fleet_check",)),
)


def tool_meta(tool: str) -> dict[str, Any] | None:
    """The `_meta` that binds a tool to its view, or None."""
    for view in VIEWS:
        if tool in view.tools:
            return {"ui": {"resourceUri": view.uri}}
    return None


def extension() -> Apps:
    """The Apps extension with every view's page (advertised in the server's capabilities)."""
    apps = Apps()
    for view in VIEWS:
        apps.add_html_resource(
            view.uri,
            page(view.name),
            name=view.uri,
            title=f"crashfleet: {view.title}",
            description=f"{view.title} view of {', '.join(view.tools)}",
            prefers_border=True,
        )
    return apps


@functools.cache
def page(name: str) -> str:
    """The view's HTML with its style and scripts inlined."""
    script = "\n".join(_read(part) for part in (*PAGE_PARTS, f"{name}.js"))
    if "</" in script:  # it would end the inline <script> early
        raise ValueError(f"view {name}: '</' in its scripts")
    title = next(v.title for v in VIEWS if v.name == name)
    return (
        _read("page.html")
        .replace("{{title}}", title)
        .replace("{{style}}", _read("view.css"))
        .replace("{{script}}", script)
    )


def _read(part: str) -> str:
    return resources.files(__package__).joinpath(part).read_text(encoding="utf-8")
