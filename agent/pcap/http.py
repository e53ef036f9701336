"""HTTP/1.x request lines and status codes; never bodies, cookies or auth headers.

Only the method, the Host header's value, the path (query string dropped: it may
carry secrets) and the status code are ever read out of a payload.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple

METHODS = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"PATCH ", b"OPTIONS ", b"CONNECT ")
_HOST = re.compile(rb"\r\nhost:[ \t]*([A-Za-z0-9.\-:\[\]]{1,100})", re.IGNORECASE)
MAX_PATH = 60


def request(payload: bytes) -> Optional[Tuple[str, str, str]]:
    """(method, host, path) when the payload starts an HTTP request."""
    if not payload.startswith(METHODS):
        return None
    line = payload.split(b"\r\n", 1)[0]
    parts = line.split(b" ")
    if len(parts) < 2:
        return None
    path = parts[1].split(b"?", 1)[0].decode("ascii", "replace")
    if len(path) > MAX_PATH:
        path = path[:MAX_PATH] + "\u2026"
    found = _HOST.search(payload)
    host = found.group(1).decode("ascii") if found else ""
    return parts[0].decode("ascii"), host, path


def status(payload: bytes) -> Optional[int]:
    if payload[:7] != b"HTTP/1." or len(payload) < 12:
        return None
    code = payload[9:12]
    return int(code) if code.isdigit() else None
