"""Read classic pcap files (tcpdump's -w format), several ring files as one stream."""

from __future__ import annotations

import os
import struct
from typing import Iterator, List, Tuple

# (packet number, timestamp, wire length, linktype, captured bytes)
Record = Tuple[int, float, int, int, bytes]

MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
CHUNK = 1 << 22


class PcapError(Exception):
    pass


def ring_files(directory: str, prefix: str) -> List[str]:
    """The ring's files oldest first (tcpdump -W reuses names, so order by mtime, then name)."""
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix)]
    except OSError:
        return []
    paths = [os.path.join(directory, n) for n in names]
    return sorted(paths, key=lambda p: (os.stat(p).st_mtime_ns, p))


def records(paths: List[str]) -> Iterator[Record]:
    """Every packet of the files in order, numbered from 1; a torn last record ends a file."""
    number = 0
    for path in paths:
        for ts, wire, link, data in _file_records(path):
            number += 1
            yield number, ts, wire, link, data


def _file_records(path: str) -> Iterator[Tuple[float, int, int, bytes]]:
    with open(path, "rb") as handle:
        head = handle.read(24)
        if len(head) < 24:
            return  # tcpdump has not written the header yet
        if head[:4] not in MAGICS:
            raise PcapError("%s is not a pcap file (pcapng is not supported)" % path)
        endian, unit = MAGICS[head[:4]]
        link = struct.unpack(endian + "I", head[20:24])[0] & 0x0FFFFFFF
        rec = struct.Struct(endian + "IIII")
        unpack = rec.unpack_from
        buf = b""
        pos = 0
        while True:
            more = handle.read(CHUNK)
            if not more:
                return
            buf = buf[pos:] + more
            pos = 0
            end = len(buf)
            while pos + 16 <= end:
                sec, frac, incl, orig = unpack(buf, pos)
                stop = pos + 16 + incl
                if stop > end:
                    break
                yield sec + frac * unit, orig, link, buf[pos + 16 : stop]
                pos = stop
