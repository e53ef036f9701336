"""DNS over UDP: the question of a query, the rcode of its answer, matched by client and id."""

from __future__ import annotations

import struct
from typing import List, Optional, Tuple

RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
QTYPES = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    65: "HTTPS",
    255: "ANY",
}
_HDR = struct.Struct("!HHHHHH").unpack_from
MAX_NAME = 80

# (id, is_response, rcode, qname, qtype)
Message = Tuple[int, bool, int, str, str]


def parse(payload: bytes) -> Optional[Message]:
    """Header and first question; None when the bytes are not a DNS message."""
    if len(payload) < 12:
        return None
    ident, flags, qdcount, _an, _ns, _ar = _HDR(payload, 0)
    name, pos = "", 12
    if qdcount:
        name, pos = _qname(payload, 12)
    qtype = ""
    if qdcount and pos + 2 <= len(payload):
        code = struct.unpack_from("!H", payload, pos)[0]
        qtype = QTYPES.get(code, str(code))
    return ident, bool(flags & 0x8000), flags & 15, name, qtype


def _qname(data: bytes, pos: int) -> Tuple[str, int]:
    labels: List[str] = []
    while pos < len(data):
        size = data[pos]
        if size == 0:
            return ".".join(labels)[:MAX_NAME] or ".", pos + 1
        if size & 0xC0:  # no compression in a question; stop rather than follow it
            break
        labels.append(data[pos + 1 : pos + 1 + size].decode("ascii", "replace"))
        pos += 1 + size
    return ".".join(labels)[:MAX_NAME] + "\u2026", len(data)


def rcode_name(code: int) -> str:
    return RCODES.get(code, "RCODE%d" % code)
