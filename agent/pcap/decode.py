"""Link, IP and transport headers of one captured packet, from bytes, with struct.

Returns plain tuples (fast to build, cheap to keep); payload stays in the record.
"""

from __future__ import annotations

import socket
import struct
from typing import Optional, Tuple

TCP, UDP, ICMP, ICMP6 = 6, 17, 1, 58
# proto, src, dst, sport, dport (ICMP: type, code), ip id, tcp flags, seq, ack, window,
# payload length on the wire, payload offset in the captured bytes, ip header offset
Packet = Tuple[int, bytes, bytes, int, int, int, int, int, int, int, int, int, int]

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_H = struct.Struct("!H").unpack_from
_IP4 = struct.Struct("!BBHHHBBH4s4s").unpack_from
_TCP = struct.Struct("!HHIIBBH").unpack_from
_PORTS = struct.Struct("!HH").unpack_from
_V6_EXT = {0, 43, 60, 51}


def l3_offset(link: int, data: bytes) -> Tuple[int, int]:
    """(ethertype, offset of the network header) for the link types tcpdump writes; (0, 0) if unknown."""
    if link == 1:  # Ethernet, maybe VLAN-tagged
        off, etype = 14, _H(data, 12)[0]
        while etype in (0x8100, 0x88A8) and len(data) >= off + 4:
            etype, off = _H(data, off + 2)[0], off + 4
        return etype, off
    if link == 276:  # Linux cooked v2 (tcpdump -i any)
        return _H(data, 0)[0], 20
    if link == 113:  # Linux cooked v1
        return _H(data, 14)[0], 16
    if link in (101, 12, 14):  # raw IP
        return (0x0800 if data[0] >> 4 == 4 else 0x86DD), 0
    if link in (0, 108):  # BSD loopback: 4-byte family
        family = data[0] or data[3]
        return (0x0800 if family == 2 else 0x86DD), 4
    return 0, 0


def decode(link: int, data: bytes) -> Optional[Packet]:
    """The packet's headers, or None for what is not IP (ARP, LLDP...) or too short to read."""
    try:
        etype, off = l3_offset(link, data)
        if etype == 0x0800:
            return _ipv4(data, off)
        if etype == 0x86DD:
            return _ipv6(data, off)
    except (struct.error, IndexError):
        pass
    return None


def _ipv4(data: bytes, off: int) -> Optional[Packet]:
    vhl, _tos, total, ipid, frag, _ttl, proto, _ck, src, dst = _IP4(data, off)
    ihl = (vhl & 15) * 4
    if frag & 0x1FFF:  # a later fragment carries no transport header
        return (proto, src, dst, 0, 0, ipid, 0, 0, 0, 0, total - ihl, off + ihl, off)
    return _transport(data, proto, src, dst, ipid, off + ihl, total - ihl, off)


def _ipv6(data: bytes, off: int) -> Optional[Packet]:
    plen = _H(data, off + 4)[0]
    proto = data[off + 6]
    src, dst = data[off + 8 : off + 24], data[off + 24 : off + 40]
    pos = off + 40
    while proto in _V6_EXT or proto == 44:
        nxt = data[pos]
        size = 8 if proto == 44 else (data[pos + 1] + 2) * 4 if proto == 51 else (data[pos + 1] + 1) * 8
        plen -= size
        pos += size
        proto = nxt
    return _transport(data, proto, src, dst, 0, pos, plen, off)


def _transport(
    data: bytes, proto: int, src: bytes, dst: bytes, ipid: int, pos: int, length: int, ip_off: int
) -> Packet:
    if proto == TCP:
        sport, dport, seq, ack, hl, flags, win = _TCP(data, pos)
        hl = (hl >> 4) * 4
        return (TCP, src, dst, sport, dport, ipid, flags, seq, ack, win, length - hl, pos + hl, ip_off)
    if proto == UDP:
        sport, dport = _PORTS(data, pos)
        return (UDP, src, dst, sport, dport, ipid, 0, 0, 0, 0, length - 8, pos + 8, ip_off)
    if proto in (ICMP, ICMP6):
        return (proto, src, dst, data[pos], data[pos + 1], ipid, 0, 0, 0, 0, length - 8, pos + 8, ip_off)
    return (proto, src, dst, 0, 0, ipid, 0, 0, 0, 0, length, pos, ip_off)


def addr(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def endpoint(raw: bytes, port: int) -> str:
    text = addr(raw)
    return ("%s:%d" if len(raw) == 4 else "[%s]:%d") % (text, port)


PROTO_NAMES = {
    TCP: "tcp",
    UDP: "udp",
    ICMP: "icmp",
    ICMP6: "icmp6",
    2: "igmp",
    47: "gre",
    50: "esp",
    89: "ospf",
    132: "sctp",
}


def flag_text(flags: int) -> str:
    """tcpdump's notation: S, F, R, P, . for ACK."""
    text = "".join(c for bit, c in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (URG, "U")) if flags & bit)
    return text + ("." if flags & ACK else "")
