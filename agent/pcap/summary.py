"""One pass over a capture: conversations, TCP health, DNS, HTTP, TLS, ICMP; then a bounded summary."""

from __future__ import annotations

import typing
from collections import Counter
from typing import Any, Dict, Iterable, List, Optional, Tuple

from . import dns, http, icmp, tls
from .decode import ACK, ICMP, ICMP6, SYN, TCP, UDP, decode
from .reader import Record
from .tcp import TcpState, update

APP_FIRST = frozenset(b"GPHDOCh\x16")  # first byte of an HTTP method, "HTTP/", or a TLS handshake
DNS_PORTS = (53, 5353)
PENDING_GRACE = 1.0  # a query younger than this at the end of the capture may still be answered


class Conv:
    """A conversation: the 5-tuple seen from its client (who sent first, or the SYN)."""

    __slots__ = (
        "bytes",
        "cid",
        "client",
        "cport",
        "first",
        "first_num",
        "last",
        "pkts",
        "proto",
        "server",
        "sport",
        "tcp",
    )

    def __init__(
        self, cid: int, proto: int, client: bytes, cport: int, server: bytes, sport: int, ts: float, num: int
    ) -> None:
        self.cid, self.proto = cid, proto
        self.client, self.cport, self.server, self.sport = client, cport, server, sport
        self.pkts = [0, 0]
        self.bytes = [0, 0]
        self.first = self.last = ts
        self.first_num = num
        self.tcp: Optional[TcpState] = TcpState() if proto == TCP else None


class Summariser:
    """Feed it records (one or several times), then ask for facts; memory grows with conversations."""

    def __init__(self) -> None:
        self.convs: Dict[tuple, Tuple[Conv, int]] = {}  # type: ignore[type-arg]  # both directions' keys
        self.order: List[Conv] = []
        self.packets = 0
        self.bytes = 0
        self.non_ip: typing.Counter[int] = Counter()
        self.first_ts: Optional[float] = None
        self.last_ts = 0.0
        self.dns_pending: Dict[tuple, tuple] = {}  # type: ignore[type-arg]  # (client, port, id) -> query
        self.dns_done: List[tuple] = []  # type: ignore[type-arg]  # (name, qtype, rcode, latency, num, server)
        self.http: List[tuple] = []  # type: ignore[type-arg]  # (method, host, path, status, latency, cid, num)
        self.tls: typing.Counter[Tuple[str, str]] = Counter()
        self.icmp: typing.Counter[Tuple[str, str, str]] = Counter()
        self.icmp_nums: Dict[Tuple[str, str, str], int] = {}

    def feed(self, records: Iterable[Record]) -> None:
        convs, order = self.convs, self.order
        packets, total = self.packets, self.bytes
        for num, ts, wire, link, data in records:
            packets += 1
            total += wire
            p = decode(link, data)
            if p is None:
                self.non_ip[link] += 1
                continue
            proto, src, dst, sp, dp = p[0], p[1], p[2], p[3], p[4]
            if proto in (ICMP, ICMP6):
                sp = dp = 0
            entry = convs.get((proto, src, sp, dst, dp))
            if entry is None:
                if proto == TCP and p[6] & (SYN | ACK) == (SYN | ACK):  # joined mid-handshake
                    conv = Conv(len(order) + 1, proto, dst, dp, src, sp, ts, num)
                    convs[(proto, dst, dp, src, sp)] = (conv, 0)
                    entry = convs[(proto, src, sp, dst, dp)] = (conv, 1)
                else:
                    conv = Conv(len(order) + 1, proto, src, sp, dst, dp, ts, num)
                    entry = convs[(proto, src, sp, dst, dp)] = (conv, 0)
                    convs[(proto, dst, dp, src, sp)] = (conv, 1)
                order.append(conv)
            conv, d = entry
            conv.pkts[d] += 1
            conv.bytes[d] += wire
            conv.last = ts
            if proto == TCP:
                plen = p[10]
                assert conv.tcp is not None
                if (
                    update(conv.tcp, d, num, ts, p[6], p[7], p[8], p[9], plen)
                    and plen > 0
                    and p[11] < len(data)
                    and data[p[11]] in APP_FIRST
                ):
                    self._app(conv, d, num, ts, data[p[11] :])
            elif proto == UDP:
                if (sp in DNS_PORTS or dp in DNS_PORTS) and p[11] < len(data):
                    self._dns(src, sp, dst, dp, num, ts, data[p[11] :])
            elif proto in (ICMP, ICMP6):
                self._icmp(p, data, num)
        if self.first_ts is None and order:
            self.first_ts = order[0].first
        self.packets, self.bytes = packets, total
        self.last_ts = max((c.last for c in order), default=0.0)

    def _app(self, conv: Conv, d: int, num: int, ts: float, payload: bytes) -> None:
        st = conv.tcp
        assert st is not None
        if d == 0:
            req = http.request(payload)
            if req is not None:
                st.requests.append((req, ts, num))
                return
            hello = tls.client_hello(payload)
            if hello is not None:
                self.tls[hello] += 1
        elif st.requests:
            code = http.status(payload)
            if code is not None:
                (method, host, path), sent, req_num = st.requests.pop(0)
                self.http.append((method, host, path, code, ts - sent, conv.cid, req_num))

    def _dns(self, src: bytes, sp: int, dst: bytes, dp: int, num: int, ts: float, payload: bytes) -> None:
        msg = dns.parse(payload)
        if msg is None:
            return
        ident, response, rcode, name, qtype = msg
        if not response:
            self.dns_pending.setdefault((src, sp, ident), (name, qtype, ts, num, dst))
            return
        query = self.dns_pending.pop((dst, dp, ident), None)
        if query is not None:
            self.dns_done.append((query[0], query[1], rcode, ts - query[2], query[3], src))

    def _icmp(self, p: tuple, data: bytes, num: int) -> None:  # type: ignore[type-arg]
        found = icmp.error(p[0], p[3], p[4], data, p[11])
        if found is not None:
            from .decode import addr

            key = (found[0], addr(p[1]), found[1])
            self.icmp[key] += 1
            self.icmp_nums.setdefault(key, num)

    def unanswered_dns(self) -> List[tuple]:  # type: ignore[type-arg]
        """Queries with no answer, except those too young to judge when the capture ended."""
        limit = self.last_ts - PENDING_GRACE
        return [q for q in self.dns_pending.values() if q[2] <= limit]

    def duration(self) -> float:
        return 0.0 if self.first_ts is None else max(0.0, self.last_ts - self.first_ts)


def summarise(records: Iterable[Record]) -> Summariser:
    summariser = Summariser()
    summariser.feed(records)
    return summariser


def conv_key_text(conv: Conv) -> str:
    from .decode import PROTO_NAMES, addr, endpoint

    name = PROTO_NAMES.get(conv.proto, str(conv.proto))
    if conv.proto in (TCP, UDP):
        return "%s %s>%s" % (name, endpoint(conv.client, conv.cport), endpoint(conv.server, conv.sport))
    return "%s %s>%s" % (name, addr(conv.client), addr(conv.server))


def flows(summariser: Summariser, limit: int) -> List[Dict[str, Any]]:
    """Per-conversation packet counts by direction (for correlating hosts), busiest first."""
    ranked = sorted(summariser.order, key=lambda c: -(c.pkts[0] + c.pkts[1]))[:limit]
    return [
        {
            "cid": "c%d" % c.cid,
            "flow": conv_key_text(c),
            "sent": c.pkts[0],
            "returned": c.pkts[1],
            "first": c.first,
            "last": c.last,
        }
        for c in ranked
    ]


def window(summariser: Summariser) -> Optional[List[float]]:
    """[first, last] packet time of the whole capture (wall clock), None when it saw nothing."""
    order = summariser.order
    if not order:
        return None
    return [min(c.first for c in order), max(c.last for c in order)]
