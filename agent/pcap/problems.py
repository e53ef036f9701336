"""Ranked problems: each with a severity, one sentence, and the evidence to drill into."""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from .decode import addr, endpoint
from .summary import PENDING_GRACE, Conv, Summariser

SEVERITY = {"high": 3, "medium": 2, "low": 1}
SLOW_HANDSHAKE = 0.2  # seconds, SYN -> SYN/ACK as seen here
SLOW_DNS = 0.5
SLOW_HTTP = 2.0
Problem = Dict[str, Any]


def problems(s: Summariser, limit: int, evidence: int) -> List[Problem]:
    tcps = [c for c in s.order if c.tcp is not None]
    # A lone SYN in the capture's last moments may be answered just after tcpdump stopped: not judged.
    # (A retransmitted SYN went unanswered for a full RTO: it is judged wherever it falls.)
    settled = [c for c in tcps if c.last <= s.last_ts - PENDING_GRACE or (c.tcp is not None and c.tcp.syns > 1)]
    found: List[Tuple[int, Problem]] = list(_unanswered_syns(settled, evidence))
    for check in (_resets, _retransmissions, _gaps, _zero_windows, _dup_acks, _slow_handshakes):
        found.extend(check(tcps, evidence))
    found.extend(_dns(s, evidence))
    found.extend(_http(s, evidence))
    found.extend(_icmp(s, evidence))
    found.sort(key=lambda item: (-SEVERITY[item[1]["severity"]], -item[0]))
    return [p for _, p in found[:limit]]


def _problem(
    weight: int, severity: str, kind: str, text: str, convs: List[Conv], packets: List[int], evidence: int
) -> Tuple[int, Problem]:
    out: Problem = {"severity": severity, "kind": kind, "text": text}
    if convs:
        out["conversations"] = ["c%d" % c.cid for c in convs[:evidence]]
    if packets:
        out["packets"] = sorted(set(packets))[:evidence]
    return weight, out


def _where(convs: List[Conv]) -> str:
    """Most common server endpoint among convs: 'to 10.0.0.1:80 (3 of 4)'."""
    servers: Dict[str, int] = {}
    for c in convs:
        key = endpoint(c.server, c.sport)
        servers[key] = servers.get(key, 0) + 1
    top = max(servers.items(), key=lambda kv: kv[1])
    return "to %s" % top[0] + ("" if len(servers) == 1 else " (%d of %d)" % (top[1], len(convs)))


def _count(convs: List[Conv], kind: str) -> Tuple[List[Conv], int, List[int]]:
    hit = sorted(
        (c for c in convs if c.tcp and c.tcp.counts.get(kind)), key=lambda c: -(c.tcp.counts[kind] if c.tcp else 0)
    )
    total = sum(c.tcp.counts[kind] for c in hit if c.tcp)
    nums = [n for c in hit[:3] if c.tcp for n in c.tcp.evidence[kind]]
    return hit, total, nums


def _unanswered_syns(tcps: List[Conv], ev: int) -> List[Tuple[int, Problem]]:
    hit = [c for c in tcps if c.tcp and c.tcp.ended() == "syn-unanswered"]
    if not hit:
        return []
    syns = sum(c.tcp.syns for c in hit if c.tcp)
    return [
        _problem(
            len(hit),
            "high",
            "syn_unanswered",
            "%d connection attempt(s) %s got no SYN/ACK (%d SYNs sent): filtered or host down"
            % (len(hit), _where(hit), syns),
            hit,
            [c.tcp.syn_num for c in hit if c.tcp],
            ev,
        )
    ]


def _resets(tcps: List[Conv], ev: int) -> List[Tuple[int, Problem]]:
    refused = [c for c in tcps if c.tcp and c.tcp.ended() == "refused"]
    reset = [c for c in tcps if c.tcp and c.tcp.ended().startswith("reset-")]
    out = []
    if refused:
        out.append(
            _problem(
                len(refused),
                "high",
                "resets",
                "%d connection(s) refused with a reset %s: nothing listening or a REJECT rule"
                % (len(refused), _where(refused)),
                refused,
                [c.tcp.rst_num for c in refused if c.tcp],
                ev,
            )
        )
    if reset:
        by_server = sum(1 for c in reset if c.tcp and c.tcp.rst_dir == 1)
        out.append(
            _problem(
                len(reset),
                "medium",
                "resets",
                "%d established connection(s) %s ended with a reset (%d by the server, %d by the client)"
                % (len(reset), _where(reset), by_server, len(reset) - by_server),
                reset,
                [c.tcp.rst_num for c in reset if c.tcp],
                ev,
            )
        )
    return out


def _retransmissions(tcps: List[Conv], ev: int) -> List[Tuple[int, Problem]]:
    hit, total, nums = _count(tcps, "retransmissions")
    if not hit:
        return []
    sent = sum(c.pkts[0] + c.pkts[1] for c in tcps) or 1
    rate = 100.0 * total / sent
    worst = hit[0]
    severity = "high" if rate >= 2 else "medium" if rate >= 0.5 else "low"
    return [
        _problem(
            total,
            severity,
            "retransmissions",
            "%d retransmission(s) in %d conversation(s) (%.1f%% of TCP packets), mostly %s; worst c%d "
            "with %d: packet loss on the path"
            % (total, len(hit), rate, _where(hit), worst.cid, worst.tcp.counts["retransmissions"] if worst.tcp else 0),
            hit,
            nums,
            ev,
        )
    ]


def _gaps(tcps: List[Conv], ev: int) -> List[Tuple[int, Problem]]:
    hit, total, nums = _count(tcps, "gaps")
    if not hit:
        return []
    return [
        _problem(
            total,
            "medium",
            "segments_missing",
            "%d time(s) a segment never reached this capture point in %d conversation(s) %s "
            "(lost upstream, or the capture dropped it)" % (total, len(hit), _where(hit)),
            hit,
            nums,
            ev,
        )
    ]


def _zero_windows(tcps: List[Conv], ev: int) -> List[Tuple[int, Problem]]:
    hit, total, nums = _count(tcps, "zero_windows")
    if not hit:
        return []
    return [
        _problem(
            total,
            "medium",
            "zero_window",
            "%d zero-window advertisement(s) in %d conversation(s) %s: a receiver is not reading fast "
            "enough" % (total, len(hit), _where(hit)),
            hit,
            nums,
            ev,
        )
    ]


def _dup_acks(tcps: List[Conv], ev: int) -> List[Tuple[int, Problem]]:
    hit, total, nums = _count(tcps, "dup_acks")
    if total < 3:  # fast retransmit needs three: fewer is noise
        return []
    return [
        _problem(
            total,
            "low",
            "dup_acks",
            "%d duplicate ACK(s) in %d conversation(s) %s: the receiver saw a hole" % (total, len(hit), _where(hit)),
            hit,
            nums,
            ev,
        )
    ]


def _slow_handshakes(tcps: List[Conv], ev: int) -> List[Tuple[int, Problem]]:
    hit = sorted(
        (c for c in tcps if c.tcp and c.tcp.rtt is not None and c.tcp.rtt > SLOW_HANDSHAKE),
        key=lambda c: -(c.tcp.rtt or 0) if c.tcp else 0,
    )
    if not hit:
        return []
    worst = hit[0].tcp.rtt if hit[0].tcp else 0
    return [
        _problem(
            len(hit),
            "medium",
            "slow_handshake",
            "%d handshake(s) %s took over %d ms (worst %.0f ms)"
            % (len(hit), _where(hit), SLOW_HANDSHAKE * 1000, (worst or 0) * 1000),
            hit,
            [c.tcp.syn_num for c in hit if c.tcp],
            ev,
        )
    ]


def _dns(s: Summariser, ev: int) -> List[Tuple[int, Problem]]:
    out = []
    pending = s.unanswered_dns()
    if pending:
        names = sorted({q[0] for q in pending})
        servers = sorted({addr(q[4]) for q in pending})
        out.append(
            _problem(
                len(pending),
                "high",
                "dns_unanswered",
                "%d DNS quer(y/ies) to %s got no answer: %s"
                % (len(pending), ", ".join(servers[:3]), ", ".join(names[:3])),
                [],
                [q[3] for q in pending],
                ev,
            )
        )
    for code, kind, severity, why in (
        (2, "dns_servfail", "high", "the resolver failed"),
        (3, "dns_nxdomain", "medium", "the name does not exist"),
    ):
        rows = [r for r in s.dns_done if r[2] == code]
        if rows:
            names = sorted({r[0] for r in rows})
            out.append(
                _problem(
                    len(rows),
                    severity,
                    kind,
                    "%d DNS answer(s) %s (%s): %s" % (len(rows), kind.split("_")[1].upper(), why, ", ".join(names[:3])),
                    [],
                    [r[4] for r in rows],
                    ev,
                )
            )
    slow = [r for r in s.dns_done if r[3] > SLOW_DNS]
    if slow:
        out.append(
            _problem(
                len(slow),
                "medium",
                "dns_slow",
                "%d DNS answer(s) took over %d ms (worst %.0f ms)"
                % (len(slow), SLOW_DNS * 1000, max(r[3] for r in slow) * 1000),
                [],
                [r[4] for r in slow],
                ev,
            )
        )
    return out


def _http(s: Summariser, ev: int) -> List[Tuple[int, Problem]]:
    out = []
    for low, severity in ((500, "high"), (400, "low")):
        rows = [r for r in s.http if low <= r[3] < low + 100]
        if rows:
            paths = sorted({"%s %s%s" % (r[0], r[1], r[2]) for r in rows})
            out.append(
                _problem(
                    len(rows),
                    severity,
                    "http_%dxx" % (low // 100),
                    "%d HTTP response(s) %dxx: %s" % (len(rows), low // 100, ", ".join(paths[:3])),
                    [],
                    [r[6] for r in rows],
                    ev,
                )
            )
    slow = [r for r in s.http if r[4] > SLOW_HTTP]
    if slow:
        out.append(
            _problem(
                len(slow),
                "medium",
                "http_slow",
                "%d HTTP response(s) took over %.0f s" % (len(slow), SLOW_HTTP),
                [],
                [r[6] for r in slow],
                ev,
            )
        )
    return out


def _icmp(s: Summariser, ev: int) -> List[Tuple[int, Problem]]:
    if not s.icmp:
        return []
    total = sum(s.icmp.values())
    (what, src, about), _ = s.icmp.most_common(1)[0]
    return [
        _problem(
            total,
            "medium",
            "icmp_errors",
            "%d ICMP error(s), mostly %s from %s about %s" % (total, what, src, about),
            [],
            list(s.icmp_nums.values()),
            ev,
        )
    ]
