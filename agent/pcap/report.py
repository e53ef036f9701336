"""The summary a person reads: totals, mixes, top lists and ranked problems, within a token budget."""

from __future__ import annotations

import json
import typing
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

from . import dns
from .decode import PROTO_NAMES, addr
from .problems import problems
from .summary import Conv, Summariser, conv_key_text

DEFAULT_TOKENS = 1500
CHARS_PER_TOKEN = 4
WELL_KNOWN = {
    22: "ssh",
    25: "smtp",
    53: "dns",
    80: "http",
    123: "ntp",
    443: "https",
    3306: "mysql",
    5432: "postgres",
    6379: "redis",
    8080: "http-alt",
    8443: "https-alt",
}


def build(s: Summariser, max_tokens: int = DEFAULT_TOKENS, extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The whole summary; lists shrink until its JSON fits max_tokens (about 4 chars a token)."""
    limits = {
        "conversations": 8,
        "talkers": 5,
        "services": 6,
        "names": 4,
        "http": 6,
        "tls": 4,
        "icmp": 4,
        "problems": 8,
        "evidence": 5,
    }
    budget = max_tokens * CHARS_PER_TOKEN
    while True:
        out = _assemble(s, limits, extra or {})
        size = len(json.dumps(out, separators=(",", ":")))
        if size <= budget or not _shrink(limits):
            out["size_tokens"] = size // CHARS_PER_TOKEN + 1
            return out


def _shrink(limits: Dict[str, int]) -> bool:
    """Cut the longest lists first; False when nothing is left to cut."""
    for key in ("conversations", "services", "http", "talkers", "names", "tls", "icmp", "evidence", "problems"):
        if limits[key] > 1:
            limits[key] -= 1 if limits[key] <= 3 else 2
            return True
    return False


def _assemble(s: Summariser, lim: Dict[str, int], extra: Dict[str, Any]) -> Dict[str, Any]:
    convs = s.order
    out: Dict[str, Any] = dict(extra)
    out.update(
        {
            "packets": s.packets,
            "bytes": s.bytes,
            "duration_s": round(s.duration(), 3),
            "protocols": _protocols(s),
            "services": _services(convs, lim["services"]),
            "top_talkers": _talkers(convs, lim["talkers"]),
            "conversations": _conversations(convs, lim["conversations"]),
            "tcp": _tcp(convs),
        }
    )
    for key, value in (
        ("dns", _dns(s, lim["names"])),
        ("http", _http(s, lim["http"])),
        ("tls", _tls(s, lim["tls"])),
        ("icmp", _icmp(s, lim["icmp"])),
    ):
        if value:
            out[key] = value
    out["problems"] = problems(s, lim["problems"], lim["evidence"])
    return out


def _protocols(s: Summariser) -> Dict[str, int]:
    mix: typing.Counter[str] = Counter()
    for c in s.order:
        mix[PROTO_NAMES.get(c.proto, str(c.proto))] += c.pkts[0] + c.pkts[1]
    if s.non_ip:
        mix["non-ip"] = sum(s.non_ip.values())
    return dict(mix.most_common())


def _services(convs: List[Conv], limit: int) -> List[str]:
    """Packets per server port: 'tcp/443 https 1200p 12 conv'."""
    seen: Dict[Tuple[int, int], List[int]] = {}
    for c in convs:
        if c.proto in (6, 17):
            row = seen.setdefault((c.proto, c.sport), [0, 0])
            row[0] += c.pkts[0] + c.pkts[1]
            row[1] += 1
    ranked = sorted(seen.items(), key=lambda kv: -kv[1][0])[:limit]
    return [
        "%s/%d%s %dp %d conv" % (PROTO_NAMES[p], port, " " + WELL_KNOWN[port] if port in WELL_KNOWN else "", n, k)
        for (p, port), (n, k) in ranked
    ]


def _talkers(convs: List[Conv], limit: int) -> List[str]:
    total: typing.Counter[bytes] = Counter()
    for c in convs:
        total[c.client] += c.bytes[0] + c.bytes[1]
        total[c.server] += c.bytes[0] + c.bytes[1]
    return ["%s %s" % (addr(a), _size(n)) for a, n in total.most_common(limit)]


def _conversations(convs: List[Conv], limit: int) -> Dict[str, Any]:
    """The busiest conversations, plus the troubled ones first."""
    troubled = [
        c
        for c in convs
        if c.tcp is not None and (c.tcp.counts or c.tcp.ended() not in ("closed", "open", "half-closed"))
    ]
    busiest = sorted(convs, key=lambda c: -(c.bytes[0] + c.bytes[1]))
    rows: List[str] = []
    picked = set()
    for c in sorted(troubled, key=lambda c: -sum(c.tcp.counts.values()) if c.tcp else 0)[: limit // 2] + busiest:
        if len(rows) >= limit:
            break
        if c.cid not in picked:
            picked.add(c.cid)
            rows.append(_conv_row(c))
    by_proto = Counter(PROTO_NAMES.get(c.proto, str(c.proto)) for c in convs)
    return {"total": len(convs), "by_protocol": dict(by_proto), "shown": rows}


def _conv_row(c: Conv) -> str:
    text = "c%d %s %dp/%dp %s %.2fs" % (
        c.cid,
        conv_key_text(c),
        c.pkts[0],
        c.pkts[1],
        _size(c.bytes[0] + c.bytes[1]),
        c.last - c.first,
    )
    st = c.tcp
    if st is not None:
        if st.rtt is not None:
            text += " rtt %.1fms" % (st.rtt * 1000)
        for kind, n in sorted(st.counts.items()):
            text += " %s %d" % (kind, n)
        text += " " + st.ended()
    return text


def _tcp(convs: List[Conv]) -> Dict[str, Any]:
    tcps = [c.tcp for c in convs if c.tcp is not None]
    counts: typing.Counter[str] = Counter()
    ends: typing.Counter[str] = Counter()
    for st in tcps:
        counts.update(st.counts)
        ends[st.ended()] += 1
    rtts = sorted(st.rtt for st in tcps if st.rtt is not None)
    out: Dict[str, Any] = {"conversations": len(tcps), "ended": dict(ends.most_common())}
    if rtts:
        out["handshake_rtt_ms"] = {
            "median": _ms(rtts[len(rtts) // 2]),
            "p95": _ms(rtts[int(len(rtts) * 0.95)]),
            "max": _ms(rtts[-1]),
        }
    out.update(dict(counts.most_common()))
    return out if tcps else {}


def _dns(s: Summariser, limit: int) -> Dict[str, Any]:
    done, pending = s.dns_done, s.unanswered_dns()
    if not done and not pending:
        return {}
    rcodes = Counter(dns.rcode_name(r[2]) for r in done)
    lat = sorted(r[3] for r in done)
    out: Dict[str, Any] = {
        "queries": len(done) + len(s.dns_pending),
        "answered": len(done),
        "rcodes": dict(rcodes.most_common()),
        "unanswered": len(pending),
    }
    if lat:
        out["latency_ms"] = {"median": _ms(lat[len(lat) // 2]), "max": _ms(lat[-1])}
    for label, rows in (("nxdomain", [r for r in done if r[2] == 3]), ("servfail", [r for r in done if r[2] == 2])):
        if rows:
            out[label + "_names"] = _top(["%s %s" % (r[0], r[1]) for r in rows], limit)
    if pending:
        out["unanswered_names"] = _top(["%s %s @%s" % (q[0], q[1], addr(q[4])) for q in pending], limit)
    out["top_names"] = _top(["%s %s" % (r[0], r[1]) for r in done], limit)
    return out


def _http(s: Summariser, limit: int) -> Dict[str, Any]:
    if not s.http:
        return {}
    classes = Counter("%dxx" % (r[3] // 100) for r in s.http)
    rows = Counter("%s %s%s %d" % (r[0], r[1], r[2], r[3]) for r in s.http)
    lat = sorted(r[4] for r in s.http)
    return {
        "requests": len(s.http),
        "status": dict(classes.most_common()),
        "latency_ms": {"median": _ms(lat[len(lat) // 2]), "max": _ms(lat[-1])},
        "top": ["%s x%d" % (k, n) for k, n in rows.most_common(limit)],
    }


def _tls(s: Summariser, limit: int) -> Dict[str, Any]:
    if not s.tls:
        return {}
    return {
        "client_hellos": sum(s.tls.values()),
        "sni": ["%s %s x%d" % (sni or "(no sni)", version, n) for (sni, version), n in s.tls.most_common(limit)],
    }


def _icmp(s: Summariser, limit: int) -> Dict[str, Any]:
    if not s.icmp:
        return {}
    return {
        "errors": sum(s.icmp.values()),
        "top": [
            "%s from %s about %s x%d #%d" % (what, src, about, n, s.icmp_nums[(what, src, about)])
            for (what, src, about), n in s.icmp.most_common(limit)
        ],
    }


def _top(items: List[str], limit: int) -> List[str]:
    return ["%s x%d" % (k, n) if n > 1 else k for k, n in Counter(items).most_common(limit)]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return ("%d%s" if unit == "B" else "%.1f%s") % (n, unit)
        n /= 1000.0
    return "%dB" % n


__all__: List[str] = ["build"]
