"""Stored outputs as MCP resources: crashfleet://HOST/output/ID, read page by page where they lie."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.types import ResourceTemplate

from .errors import CrashfleetError, UsageError
from .icon import icons
from .recent import SCHEME, output_uri
from .runtime import Runtime
from .tools.common import output_ref
from .tools.output import output_page

TEMPLATE = f"{SCHEME}://{{host}}/output/{{output_id}}{{?cursor}}"
HELP = (
    f"crashfleet serves {SCHEME}://HOST/output/ID (optionally ?cursor=C): use the resource links of a "
    "tool result or resources/list"
)


def parse_uri(uri: str) -> tuple[str, str | None]:
    """crashfleet://HOST/output/ID?cursor=C -> (HOST:ID, C); anything else is an unknown resource."""
    parts = urlsplit(uri)
    segments = parts.path.split("/")
    if parts.scheme != SCHEME or not parts.netloc or len(segments) != 3 or segments[1] != "output" or not segments[2]:
        raise ResourceNotFoundError(f"unknown resource {uri!r}: {HELP}")
    cursor = parse_qs(parts.query).get("cursor", [None])[0]
    return output_ref(unquote(parts.netloc), unquote(segments[2])), cursor


def template() -> ResourceTemplate:
    return ResourceTemplate(
        uri_template=TEMPLATE,
        name="output",
        title="A stored output",
        description="one page of an output kept on its host; follow next_uri for more",
        mime_type="text/plain",
        icons=icons(),
    )


async def read(rt: Runtime, uri: str) -> tuple[str, dict[str, Any]]:
    """One page (the page budget of output_page) and its paging facts; the text says how to go on."""
    ref, cursor = parse_uri(uri)
    try:
        page = await output_page(rt, ref, cursor)
    except UsageError as exc:  # no such host or output, or a stale cursor
        raise ResourceNotFoundError(f"cannot read {uri}: {exc}") from None
    except CrashfleetError as exc:  # the host is there but did not answer
        raise ResourceError(f"cannot read {uri}: {exc}") from None
    next_uri = output_uri(ref, page.next_cursor) if page.next_cursor else None
    meta = {
        "start_line": page.start_line,
        "end_line": page.end_line,
        "total_lines": page.total_lines,
        "finished": page.finished,
        "truncated": page.truncated,
        "next_uri": next_uri,
    }
    text = page.text
    if next_uri:
        text += (
            f"\n[crashfleet: lines {page.start_line}-{page.end_line} of {page.total_lines}; next page: {next_uri}]\n"
        )
    return text, meta
