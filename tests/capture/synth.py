"""Synthetic pcaps, packet by packet (Ethernet/IPv4/TCP/UDP/ICMP), for unit tests and the benchmark."""

from __future__ import annotations

import random
import socket
import struct
from typing import BinaryIO

ETH = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16


class PcapWriter:
    def __init__(self, out: BinaryIO, snaplen: int = 65535) -> None:
        self.out = out
        self.snaplen = snaplen
        self.ts = 1_700_000_000.0
        self.count = 0
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))

    def frame(self, data: bytes, gap: float = 0.0001) -> None:
        self.ts += gap
        sec = int(self.ts)
        cap = data[: self.snaplen]
        self.out.write(struct.pack("<IIII", sec, int((self.ts - sec) * 1e6), len(cap), len(data)) + cap)
        self.count += 1

    def ip(self, proto: int, src: str, dst: str, body: bytes, ipid: int = 0, gap: float = 0.0001) -> None:
        header = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(body),
            ipid & 0xFFFF,
            0x4000,
            64,
            proto,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
        self.frame(ETH + header + body, gap)

    def tcp(
        self,
        src: str,
        sport: int,
        dst: str,
        dport: int,
        flags: int,
        seq: int,
        ack: int,
        payload: bytes = b"",
        win: int = 65000,
        gap: float = 0.0001,
    ) -> None:
        body = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, win, 0, 0)
        self.ip(6, src, dst, body + payload, gap=gap)

    def udp(self, src: str, sport: int, dst: str, dport: int, payload: bytes, gap: float = 0.0001) -> None:
        self.ip(17, src, dst, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload, gap=gap)


def dns_message(ident: int, name: str, response: bool = False, rcode: int = 0) -> bytes:
    flags = (0x8180 | rcode) if response else 0x0100
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, flags, 1, 1 if response and rcode == 0 else 0, 0, 0) + labels + b"\0\1\0\1"


def client_hello(sni: str) -> bytes:
    name = sni.encode()
    sni_ext = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    versions = struct.pack("!HHB", 43, 5, 4) + b"\x03\x04\x03\x03"
    exts = sni_ext + versions
    body = (
        b"\x03\x03"
        + b"\x11" * 32
        + b"\x00"
        + struct.pack("!H", 4)
        + b"\x13\x01\x13\x02"
        + b"\x01\x00"
        + struct.pack("!H", len(exts))
        + exts
    )
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def conversation(
    w: PcapWriter,
    rnd: random.Random,
    client: str,
    server: str,
    cport: int,
    sport: int,
    request: bytes,
    segments: int,
    retrans_rate: float = 0.0,
    rtt: float = 0.001,
) -> None:
    """A whole TCP exchange: handshake, request, `segments` data segments with ACKs, FIN close."""
    c, s = rnd.randint(1, 1 << 30), rnd.randint(1, 1 << 30)
    w.tcp(client, cport, server, sport, SYN, c, 0)
    w.tcp(server, sport, client, cport, SYN | ACK, s, c + 1, gap=rtt)
    w.tcp(client, cport, server, sport, ACK, c + 1, s + 1)
    w.tcp(client, cport, server, sport, PSH | ACK, c + 1, s + 1, request)
    c += 1 + len(request)
    s += 1
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n" if sport == 80 else b""
    for i in range(segments):
        data = (head if i == 0 else b"") + b"x" * (1448 - (len(head) if i == 0 else 0))
        w.tcp(server, sport, client, cport, ACK, s, c, data)
        if retrans_rate and rnd.random() < retrans_rate:
            w.tcp(server, sport, client, cport, ACK, s, c, data, gap=0.2)
        s += len(data)
        if i % 2:
            w.tcp(client, cport, server, sport, ACK, c, s)
    w.tcp(client, cport, server, sport, FIN | ACK, c, s)
    w.tcp(server, sport, client, cport, FIN | ACK, s, c + 1)
    w.tcp(client, cport, server, sport, ACK, c + 1, s + 1)


def mixed(w: PcapWriter, packets: int, seed: int = 7) -> None:
    """A realistic mix until `packets`: web and TLS conversations (1% retransmissions), DNS with some
    NXDOMAIN, a few refused and unanswered connections."""
    rnd = random.Random(seed)
    n = 0
    while w.count < packets:
        n += 1
        client = "10.1.%d.%d" % (rnd.randint(0, 3), rnd.randint(2, 250))
        server = "10.2.0.%d" % rnd.randint(2, 40)
        cport = 20000 + n % 40000
        kind = n % 10
        if kind < 2:
            ident = n & 0xFFFF
            name = "host%d.example.com" % rnd.randint(1, 300)
            w.udp(client, cport, "10.2.0.53", 53, dns_message(ident, name))
            if rnd.random() < 0.99:
                w.udp("10.2.0.53", 53, client, cport, dns_message(ident, name, True, 3 if rnd.random() < 0.05 else 0))
        elif kind == 9 and n % 50 == 9:
            w.tcp(client, cport, server, 5432, SYN, 1, 0)
            w.tcp(server, 5432, client, cport, RST | ACK, 0, 2)
        elif kind == 8 and n % 70 == 8:
            w.tcp(client, cport, server, 6379, SYN, 1, 0)
            w.tcp(client, cport, server, 6379, SYN, 1, 0, gap=1.0)
        elif kind < 6:
            req = b"GET /api/item/%d?token=x HTTP/1.1\r\nHost: shop.example.com\r\nCookie: s=SECRET\r\n\r\n" % n
            conversation(w, rnd, client, server, cport, 80, req, rnd.randint(2, 60), 0.01)
        else:
            conversation(w, rnd, client, server, cport, 443, client_hello("api.example.com"), rnd.randint(2, 60), 0.01)
