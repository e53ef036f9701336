"""Header-only packet lines for drill-down (never payload), with a small filter language.

Filter terms, all of which must match: `c12` (a conversation of the summary), an IP
address (either end), `port 80`, `tcp`/`udp`/`icmp`/`icmp6`, `#120` or `100-200`
(packet numbers).
"""

from __future__ import annotations

import ipaddress
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

from .decode import ICMP, ICMP6, PROTO_NAMES, TCP, UDP, Packet, addr, decode, endpoint, flag_text
from .reader import Record

Line = Tuple[int, Optional[int], str]  # packet number, conversation id, text
Test = Callable[[int, Optional[int], Optional[Packet]], bool]


class FilterError(ValueError):
    pass


def parse_filter(text: Optional[str]) -> List[Test]:
    tests: List[Test] = []
    words = (text or "").split()
    i = 0
    while i < len(words):
        word = words[i].lower()
        if word == "port" and i + 1 < len(words) and words[i + 1].isdigit():
            tests.append(_port_test(int(words[i + 1])))
            i += 2
            continue
        tests.append(_term(word))
        i += 1
    return tests


def _port_test(port: int) -> Test:
    return lambda n, c, p: p is not None and port in (p[3], p[4])


def _term(word: str) -> Test:
    if word[:1] == "c" and word[1:].isdigit():
        cid = int(word[1:])
        return lambda n, c, p: c == cid
    if word in ("tcp", "udp", "icmp", "icmp6"):
        proto = {"tcp": TCP, "udp": UDP, "icmp": ICMP, "icmp6": ICMP6}[word]
        return lambda n, c, p: p is not None and p[0] == proto
    if word.startswith("#") and word[1:].isdigit():
        num = int(word[1:])
        return lambda n, c, p: n == num
    low, sep, high = word.partition("-")
    if sep and low.isdigit() and high.isdigit():
        return lambda n, c, p: int(low) <= n <= int(high)
    try:
        packed = ipaddress.ip_address(word).packed
    except ValueError:
        raise FilterError("unknown filter term %r" % word) from None
    return lambda n, c, p: p is not None and packed in (p[1], p[2])


def lines(records: Iterable[Record], tests: List[Test]) -> Iterator[str]:
    """One line per matching packet: number, time from the first packet, headers only."""
    cids: dict = {}  # type: ignore[type-arg]  # unordered 5-tuple -> conversation id, as the summary numbers them
    start: Optional[float] = None
    for num, ts, wire, link, data in records:
        if start is None:
            start = ts
        p = decode(link, data)
        cid = None
        if p is not None:
            sp, dp = (0, 0) if p[0] in (ICMP, ICMP6) else (p[3], p[4])
            a, b = (p[1], sp), (p[2], dp)
            key = (p[0], a, b) if a <= b else (p[0], b, a)
            cid = cids.setdefault(key, len(cids) + 1)
        if all(test(num, cid, p) for test in tests):
            yield "%d %.6f %s%s\n" % (num, ts - start, _describe(p, wire), " c%d" % cid if cid else "")


def _describe(p: Optional[Packet], wire: int) -> str:
    if p is None:
        return "non-ip len %d" % wire
    proto = p[0]
    name = PROTO_NAMES.get(proto, str(proto))
    if proto == TCP:
        return "tcp %s > %s [%s] seq %d ack %d win %d len %d" % (
            endpoint(p[1], p[3]),
            endpoint(p[2], p[4]),
            flag_text(p[6]),
            p[7],
            p[8],
            p[9],
            p[10],
        )
    if proto == UDP:
        return "udp %s > %s len %d" % (endpoint(p[1], p[3]), endpoint(p[2], p[4]), p[10])
    if proto in (ICMP, ICMP6):
        return "%s %s > %s type %d code %d" % (name, addr(p[1]), addr(p[2]), p[3], p[4])
    return "%s %s > %s len %d" % (name, addr(p[1]), addr(p[2]), p[10])


def fingerprints(
    records: Iterable[Record], proto: int, src: bytes, sport: int, dst: bytes, dport: int, limit: int
) -> List[Tuple[int, str]]:
    """(packet number, identity) of the packets src sent to dst: the same packet seen on two hosts
    has the same identity (IP id, TCP seq/ack/flags, length)."""
    out: List[Tuple[int, str]] = []
    for num, _ts, _wire, link, data in records:
        p = decode(link, data)
        if p is None or p[0] != proto or p[1] != src or p[2] != dst:
            continue
        if proto in (TCP, UDP) and (p[3] != sport or p[4] != dport):
            continue
        out.append((num, "%d:%d:%d:%d:%d" % (p[5], p[7], p[8], p[6], p[10])))
        if len(out) >= limit:
            break
    return out
