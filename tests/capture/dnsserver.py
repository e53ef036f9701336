"""A tiny DNS server and client for capture tests (stdlib only).

serve ADDR [--silent]: answers good.test with an A record, NXDOMAIN for any other
name; --silent reads queries and never answers. query SERVER NAME: one query, 1 s wait.
"""

from __future__ import annotations

import random
import socket
import struct
import sys

GOOD = "good.test"


def _name(data: bytes) -> tuple[str, int]:
    labels, pos = [], 12
    while data[pos]:
        labels.append(data[pos + 1 : pos + 1 + data[pos]].decode())
        pos += 1 + data[pos]
    return ".".join(labels), pos + 5


def answer(query: bytes) -> bytes:
    name, end = _name(query)
    ident = query[:2]
    question = query[12:end]
    if name == GOOD:
        record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("10.77.2.2")
        return ident + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0) + question + record
    return ident + struct.pack("!HHHHH", 0x8183, 1, 0, 0, 0) + question


def serve(address: str, silent: bool) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    while True:
        data, peer = sock.recvfrom(512)
        if not silent:
            sock.sendto(answer(data), peer)


def query(server: str, name: str) -> str:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    sock.sendto(
        struct.pack("!HHHHHH", random.randint(0, 65535), 0x0100, 1, 0, 0, 0) + labels + b"\0\0\1\0\1", (server, 53)
    )
    try:
        data = sock.recv(512)
    except TimeoutError:
        return "timeout"
    return {0: "NOERROR", 3: "NXDOMAIN"}.get(data[3] & 15, "other")


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], "--silent" in sys.argv)
    else:
        print(query(sys.argv[2], sys.argv[3]))
