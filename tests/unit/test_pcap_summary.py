"""The summariser on synthetic captures: each detector, privacy, bounded size, torn files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from crashfleet.agent.pcap import lines, reader, report, summary
from tests.capture.synth import ACK, PSH, SYN, PcapWriter, client_hello, conversation, dns_message, mixed

A, B = "10.9.0.1", "10.9.0.2"


def summarise(tmp_path: Path, build, snaplen: int = 65535, tokens: int = 1500) -> dict:  # type: ignore[no-untyped-def]
    path = tmp_path / "t.pcap"
    with path.open("wb") as out:
        build(PcapWriter(out, snaplen))
    return report.build(summary.summarise(reader.records([str(path)])), tokens)


def kinds(out: dict) -> set[str]:  # type: ignore[type-arg]
    return {p["kind"] for p in out["problems"]}


def test_clean_conversation_has_no_problem(tmp_path: Path) -> None:
    out = summarise(
        tmp_path, lambda w: conversation(w, random.Random(1), A, B, 40000, 80, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 10)
    )
    assert out["problems"] == [] and out["tcp"]["ended"] == {"closed": 1}
    assert out["http"]["top"] == ["GET x/ 200 x1"]


def test_http_never_shows_query_cookies_or_auth(tmp_path: Path) -> None:
    req = (
        b"POST /login?password=hunter2 HTTP/1.1\r\nHost: shop\r\nCookie: sid=SECRET1\r\n"
        b"Authorization: Bearer SECRET2\r\n\r\nuser=SECRET3"
    )
    out = summarise(tmp_path, lambda w: conversation(w, random.Random(1), A, B, 40000, 80, req, 2))
    text = json.dumps(out)
    assert "POST shop/login 200 x1" in out["http"]["top"]
    assert not any(secret in text for secret in ("hunter2", "SECRET1", "SECRET2", "SECRET3"))


def test_tls_sni_and_version(tmp_path: Path) -> None:
    out = summarise(
        tmp_path, lambda w: conversation(w, random.Random(1), A, B, 40000, 443, client_hello("db.internal.example"), 3)
    )
    assert out["tls"]["sni"] == ["db.internal.example TLS1.3 x1"]


def test_retransmissions_dup_acks_zero_window(tmp_path: Path) -> None:
    def build(w: PcapWriter) -> None:
        w.tcp(A, 40000, B, 80, SYN, 100, 0)
        w.tcp(B, 80, A, 40000, SYN | ACK, 500, 101)
        w.tcp(A, 40000, B, 80, ACK, 101, 501)
        for i in range(3):  # segment 2 lost: the receiver acks segment 1 again and again
            w.tcp(B, 80, A, 40000, ACK, 501 + (i + 1) * 100 if i else 501, 101, b"x" * 100)
            w.tcp(A, 40000, B, 80, ACK, 101, 601)
        w.tcp(A, 40000, B, 80, ACK, 101, 601)
        w.tcp(B, 80, A, 40000, ACK, 601, 101, b"x" * 100, gap=0.3)  # the retransmission
        w.tcp(A, 40000, B, 80, ACK, 101, 901, win=0)

    out = summarise(tmp_path, build)
    assert {"retransmissions", "dup_acks", "zero_window", "segments_missing"} <= kinds(out), out["problems"]


def test_slow_handshake_and_icmp_unreachable(tmp_path: Path) -> None:
    def build(w: PcapWriter) -> None:
        w.tcp(A, 40000, B, 80, SYN, 100, 0)
        w.tcp(B, 80, A, 40000, SYN | ACK, 500, 101, gap=0.5)
        w.tcp(A, 40000, B, 80, ACK, 101, 501)
        quoted = (
            bytes.fromhex("45000030000040004011000a")
            + bytes([10, 9, 0, 1, 10, 9, 0, 2])
            + bytes.fromhex("9c40003500180000")
        )
        w.ip(1, B, A, bytes([3, 3, 0, 0, 0, 0, 0, 0]) + quoted)

    out = summarise(tmp_path, build)
    assert {"slow_handshake", "icmp_errors"} <= kinds(out)
    assert out["icmp"]["top"][0].startswith("unreachable/port from 10.9.0.2 about udp 10.9.0.1:40000>10.9.0.2:53")


def test_dns_rcodes_latency_and_unanswered(tmp_path: Path) -> None:
    def build(w: PcapWriter) -> None:
        w.udp(A, 5000, B, 53, dns_message(1, "ok.test"))
        w.udp(B, 53, A, 5000, dns_message(1, "ok.test", True), gap=0.8)
        w.udp(A, 5001, B, 53, dns_message(2, "bad.test"))
        w.udp(B, 53, A, 5001, dns_message(2, "bad.test", True, 2))
        w.udp(A, 5002, B, 53, dns_message(3, "lost.test"))
        w.udp(A, 5003, B, 53, dns_message(4, "late.test"), gap=2.0)

    out = summarise(tmp_path, build)
    assert {"dns_servfail", "dns_unanswered", "dns_slow"} <= kinds(out)
    assert out["dns"]["unanswered_names"] == ["lost.test A @10.9.0.2"]  # late.test may still be answered


def test_summary_stays_under_budget_whatever_the_size(tmp_path: Path) -> None:
    out = summarise(tmp_path, lambda w: mixed(w, 60000), snaplen=320)
    assert out["packets"] >= 60000 and len(out["problems"]) >= 4
    assert out["size_tokens"] <= 1500 and len(json.dumps(out)) <= 1500 * 4
    small = summarise(tmp_path, lambda w: mixed(w, 60000), snaplen=320, tokens=400)
    assert small["size_tokens"] <= 400 + 100 and small["problems"]


def test_torn_last_record_and_ring_order(tmp_path: Path) -> None:
    for i in (0, 1):
        with (tmp_path / f"ring.pcap{i}").open("wb") as out:
            conversation(PcapWriter(out), random.Random(i), A, B, 40000 + i, 80, b"GET / HTTP/1.1\r\n\r\n", 2)
    data = (tmp_path / "ring.pcap1").read_bytes()
    (tmp_path / "ring.pcap1").write_bytes(data[:-30])  # tcpdump was still writing it
    files = reader.ring_files(str(tmp_path), "ring.pcap")
    s = summary.summarise(reader.records(files))
    assert s.packets == 2 * 10 - 1 and len(s.order) == 2  # 10 packets each, the last one torn


def test_packet_lines_filter(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    with path.open("wb") as out:
        w = PcapWriter(out)
        w.tcp(A, 40000, B, 80, SYN, 1, 0)
        w.udp(A, 5000, B, 53, dns_message(1, "secret.test"))
        w.tcp(A, 40000, B, 80, PSH | ACK, 2, 1, b"GET /x HTTP/1.1\r\n\r\n")
    rows = list(lines.lines(reader.records([str(path)]), lines.parse_filter("c1 port 80")))
    assert rows == [
        "1 0.000000 tcp 10.9.0.1:40000 > 10.9.0.2:80 [S] seq 1 ack 0 win 65000 len 0 c1\n",
        "3 0.000200 tcp 10.9.0.1:40000 > 10.9.0.2:80 [P.] seq 2 ack 1 win 65000 len 19 c1\n",
    ]
    dns = "".join(lines.lines(reader.records([str(path)]), lines.parse_filter("udp")))
    assert "c2" in dns and "secret" not in dns
    with pytest.raises(lines.FilterError, match="unknown filter term 'bogus'"):
        lines.parse_filter("bogus")
