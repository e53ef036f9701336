"""crashfleet's icon: a small PNG drawn in code (no binary in the repo), for MCP icons and the bundle."""

from __future__ import annotations

import base64
import functools
import struct
import zlib

from mcp.types import Icon

SIZE = 64
BACKGROUND = (24, 38, 64)
TRACE = (235, 87, 66)


def _on_trace(x: int, y: int) -> bool:
    """A heartbeat line with one spike: the 'something crashed' trace."""
    middle = SIZE // 2
    if 22 <= x < 30:
        line = middle - (x - 22) * 3
    elif 30 <= x < 38:
        line = middle - 24 + (x - 30) * 6
    elif 38 <= x < 42:
        line = middle + 24 - (x - 38) * 6
    else:
        line = middle
    return abs(y - line) <= 2 and 8 <= x < SIZE - 8


def _pixel(x: int, y: int) -> tuple[int, int, int, int]:
    corner = 10  # rounded corners: transparent outside the arcs
    cx = min(max(x, corner), SIZE - 1 - corner)
    cy = min(max(y, corner), SIZE - 1 - corner)
    if (x - cx) ** 2 + (y - cy) ** 2 > corner ** 2:
        return (0, 0, 0, 0)
    return (*(TRACE if _on_trace(x, y) else BACKGROUND), 255)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@functools.cache
def icon_png() -> bytes:
    """The icon as PNG bytes (RGBA, SIZE x SIZE), the same on every build."""
    rows = b"".join(b"\0" + bytes(c for x in range(SIZE) for c in _pixel(x, y)) for y in range(SIZE))
    header = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows, 9)) + \
        _chunk(b"IEND", b"")


def icons() -> list[Icon]:
    """MCP icons (tools, prompts, resources): the PNG as a data: URI, so no network is needed."""
    src = "data:image/png;base64," + base64.b64encode(icon_png()).decode()
    return [Icon(src=src, mime_type="image/png", sizes=[f"{SIZE}x{SIZE}"])]
