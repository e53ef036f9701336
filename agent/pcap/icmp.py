"""ICMP errors (unreachable, time exceeded, ...) and which flow they are about."""

from __future__ import annotations

import struct
from typing import Optional, Tuple

from .decode import ICMP6, PROTO_NAMES, addr, endpoint

V4_ERRORS = {3: "unreachable", 4: "source-quench", 5: "redirect", 11: "time-exceeded", 12: "parameter-problem"}
V6_ERRORS = {1: "unreachable", 2: "packet-too-big", 3: "time-exceeded", 4: "parameter-problem"}
V4_UNREACH = {
    0: "net",
    1: "host",
    2: "protocol",
    3: "port",
    4: "frag-needed",
    9: "net-prohibited",
    10: "host-prohibited",
    13: "admin-prohibited",
}
V6_UNREACH = {0: "no-route", 1: "admin-prohibited", 3: "address", 4: "port", 5: "policy"}


def error(proto: int, kind: int, code: int, data: bytes, poff: int) -> Optional[Tuple[str, str]]:
    """(what, about) for an ICMP error; None for echo and other informational messages."""
    names, codes = (V6_ERRORS, V6_UNREACH) if proto == ICMP6 else (V4_ERRORS, V4_UNREACH)
    if kind not in names:
        return None
    what = names[kind]
    if what == "unreachable":
        what += "/" + codes.get(code, str(code))
    return what, _inner(data, poff, proto == ICMP6)


def _inner(data: bytes, pos: int, v6: bool) -> str:
    """The offending packet's flow, from the header the ICMP error quotes."""
    try:
        if v6:
            proto, src, dst, pos = data[pos + 6], data[pos + 8 : pos + 24], data[pos + 24 : pos + 40], pos + 40
        else:
            proto, src, dst = data[pos + 9], data[pos + 12 : pos + 16], data[pos + 16 : pos + 20]
            pos += (data[pos] & 15) * 4
        name = PROTO_NAMES.get(proto, str(proto))
        if proto in (6, 17) and pos + 4 <= len(data):
            sport, dport = struct.unpack_from("!HH", data, pos)
            return "%s %s>%s" % (name, endpoint(src, sport), endpoint(dst, dport))
        return "%s %s>%s" % (name, addr(src), addr(dst))
    except (IndexError, struct.error, ValueError):
        return "?"
