"""Regex search over whole blocks of an output instead of line by line.

One `re` scan of a multi-megabyte block runs in C; a Python loop over its lines
costs ~0.3 us a line before any matching.  The block scan only proposes
candidate lines: each is checked again on its own, so the result is exactly the
line-by-line one.  That holds when a match at a position of a line is also a
match at that position of the block (with MULTILINE), which is so unless the
pattern looks past the line's ends: lookarounds, \\A/\\Z, possessive or atomic
parts.  Such patterns get None from `block_pattern` and the line loop instead.
"""

from __future__ import annotations

import re
import time
from typing import Callable, Iterator, Match, Optional, Pattern, Protocol, Tuple

BLOCK = 4 << 20  # bytes read and scanned at once
MAX_LINE = 16 << 20  # a line longer than this goes to the line loop (which segments it)
_REGEX_SYNTAX = ".^$*+?{}[]\\|()"
_LOOKS_PAST_LINE = ("(?=", "(?!", "(?<", "(?>", "\\A", "\\Z", "*+", "++", "?+", "}+")

# What matching_lines yields: a match (line, text, match) or a stop (line, None, None):
# the caller goes on from that line another way (deadline passed, or a line too long).
Hit = Tuple[int, Optional[str], Optional[Match[str]]]


class Readable(Protocol):
    """An unbuffered binary file (the store opens its data files so)."""

    def seek(self, offset: int, whence: int = 0) -> int: ...
    def readinto(self, buffer: memoryview) -> Optional[int]: ...


def block_pattern(rx: Pattern[str]) -> Optional[Pattern[str]]:
    """The pattern for block scans, or None when only the line loop is exact."""
    if any(token in rx.pattern for token in _LOOKS_PAST_LINE):
        return None
    return re.compile(rx.pattern, rx.flags | re.MULTILINE)


def matching_lines(
    f: Readable,
    pos: int,
    end: int,
    rx: Pattern[str],
    block_rx: Pattern[str],
    deadline: float,
    line_at: Callable[[int], int],
) -> Iterator[Hit]:
    """Lines from byte `pos` (a line start) to byte `end` that rx matches, in order.

    Each block ends at its last newline; the next one is read from there.
    line_at(offset) numbers the line starting at a byte offset (the store's
    index answers it), so a scan that finds nothing never counts lines.
    """
    literal = _literal(rx)
    size, base, scanned = BLOCK, pos, False
    buf = bytearray(size)  # one buffer, refilled: no allocation or copy per block
    while base < end:
        if scanned and time.monotonic() > deadline:  # one block at least: always progress
            yield line_at(base), None, None
            return
        f.seek(base)
        got = f.readinto(memoryview(buf)[: min(size, end - base)])
        if not got:
            return
        cut = got if base + got >= end else buf.rfind(b"\n", 0, got) + 1
        if not cut:  # a line longer than the buffer
            if size >= MAX_LINE:
                yield line_at(base), None, None
                return
            size *= 2
            buf = bytearray(size)
            continue
        if literal is not None:  # find() is memchr-fast and needs no decoding of the block
            yield from _scan_bytes(buf, cut, base, rx, literal, line_at)
        else:
            yield from _scan(_decode(buf[:cut]), line_at(base), rx, block_rx)
        base, scanned = base + cut, True


def _decode(body: bytearray) -> str:
    """A block as the store's lines see it: CRLF as LF, no final newline."""
    if b"\r" in body:
        body = body.replace(b"\r\n", b"\n")
    return body.decode("utf-8", "replace")[: -1 if body.endswith(b"\n") else None]


def _literal(rx: Pattern[str]) -> Optional[bytes]:
    """The pattern's UTF-8 bytes when it is a plain case-sensitive string, else None."""
    if (
        rx.flags & ~(re.UNICODE | re.ASCII)
        or not rx.pattern
        or "\ufffd" in rx.pattern
        or any(char in rx.pattern for char in _REGEX_SYNTAX)
    ):
        return None
    return rx.pattern.encode("utf-8")


def _scan_bytes(
    buf: bytearray, cut: int, base: int, rx: Pattern[str], literal: bytes, line_at: Callable[[int], int]
) -> Iterator[Hit]:
    """Candidates in buf[:cut] by substring search, each decoded and confirmed on its own line."""
    at = 0
    while at < cut:
        found = buf.find(literal, at, cut)
        if found < 0:
            return
        start = buf.rfind(b"\n", 0, found) + 1
        stop = buf.find(b"\n", found, cut)
        stop = cut if stop < 0 else stop
        raw = buf[start:stop]
        line = (raw[:-1] if raw.endswith(b"\r") else raw).decode("utf-8", "replace")
        mo = rx.search(line)
        if mo is not None:
            yield line_at(base + start), line, mo
        at = stop + 1


def _scan(text: str, lineno: int, rx: Pattern[str], block_rx: Pattern[str]) -> Iterator[Hit]:
    """Candidates from one scan of the block, each confirmed on its own line."""
    at = counted = 0
    search = block_rx.search
    while True:
        found = search(text, at)
        if found is None:
            return
        start = text.rfind("\n", 0, found.start()) + 1
        stop = text.find("\n", found.start())
        stop = len(text) if stop < 0 else stop
        lineno += text.count("\n", counted, start)
        counted = start
        line = text[start:stop]
        mo = rx.search(line)
        if mo is not None:
            yield lineno, line, mo
        if stop >= len(text):
            return
        at = stop + 1
