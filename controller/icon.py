"""crashfleet's icon: a small PNG drawn in code (no binary in the repo), for MCP icons and the bundle."""

from __future__ import annotations

import base64
import functools
import itertools
import math
import struct
import zlib

from mcp.types import Icon

SIZE = 64  # MCP icons: inline in every tools/prompts/resources listing, so small
BUNDLE_SIZE = 512  # the .mcpb icon: MCPB recommends a 512x512 PNG
DESIGN = 64  # the drawing's own grid; any size samples it
BACKGROUND = (24, 38, 64)
TRACE = (235, 87, 66)


TRACE_POINTS = ((8, 32), (22, 32), (30, 8), (38, 56), (42, 32), (56, 32))  # design coordinates
TRACE_HALF_WIDTH = 1.6


def _on_trace(x: float, y: float) -> bool:
    """A heartbeat line with one spike, the 'something crashed' trace: near one of its segments."""
    return any(_distance(x, y, a, b) <= TRACE_HALF_WIDTH for a, b in itertools.pairwise(TRACE_POINTS))


def _distance(x: float, y: float, a: tuple[int, int], b: tuple[int, int]) -> float:
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(x - ax - t * dx, y - ay - t * dy)


def _pixel(x: float, y: float) -> tuple[int, int, int, int]:
    corner = 10  # rounded corners: transparent outside the arcs
    cx = min(max(x, corner), DESIGN - corner)
    cy = min(max(y, corner), DESIGN - corner)
    if (x - cx) ** 2 + (y - cy) ** 2 > corner**2:
        return (0, 0, 0, 0)
    return (*(TRACE if _on_trace(x, y) else BACKGROUND), 255)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@functools.cache
def icon_png(size: int = SIZE) -> bytes:
    """The icon as PNG bytes (RGBA, size x size), the same on every build."""
    if not 16 <= size <= 1024:
        raise ValueError(f"icon size must be 16..1024 pixels, got {size}")
    scale = DESIGN / size
    rows = b"".join(
        b"\0" + bytes(c for x in range(size) for c in _pixel((x + 0.5) * scale, (y + 0.5) * scale)) for y in range(size)
    )
    header = struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows, 9)) + _chunk(b"IEND", b"")
    )


def icons() -> list[Icon]:
    """MCP icons (tools, prompts, resources): the PNG as a data: URI, so no network is needed."""
    src = "data:image/png;base64," + base64.b64encode(icon_png()).decode()
    return [Icon(src=src, mime_type="image/png", sizes=[f"{SIZE}x{SIZE}"])]
