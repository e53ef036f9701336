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
from typing import BinaryIO, Iterator, Match, Optional, Pattern, Tuple

BLOCK = 4 << 20          # bytes read and scanned at once
MAX_CARRY = 16 << 20     # a line longer than this goes to the line loop (which segments it)
_LOOKS_PAST_LINE = ("(?=", "(?!", "(?<", "(?>", "\\A", "\\Z", "*+", "++", "?+", "}+")

# What matching_lines yields: a match (line, text, match) or a stop (line, None, None):
# the caller goes on from that line another way (deadline passed, or a line too long).
Hit = Tuple[int, Optional[str], Optional[Match[str]]]


def block_pattern(rx: Pattern[str]) -> Optional[Pattern[str]]:
    """The pattern for block scans, or None when only the line loop is exact."""
    if any(token in rx.pattern for token in _LOOKS_PAST_LINE):
        return None
    return re.compile(rx.pattern, rx.flags | re.MULTILINE)


def matching_lines(f: BinaryIO, lineno: int, pos: int, end: int, rx: Pattern[str],
                   block_rx: Pattern[str], deadline: float) -> Iterator[Hit]:
    """Lines from `lineno` (starting at byte `pos`) to byte `end` that rx matches, in order."""
    carry = b""
    first = lineno
    f.seek(pos)
    while pos < end:
        if lineno > first and time.monotonic() > deadline:  # one block at least: always progress
            yield lineno, None, None
            return
        raw = f.read(min(BLOCK, end - pos))
        if not raw:
            return
        pos += len(raw)
        buf = carry + raw if carry else raw
        cut = len(buf) if pos >= end else buf.rfind(b"\n") + 1
        if not cut:
            if len(buf) > MAX_CARRY:
                yield lineno, None, None
                return
            carry = buf
            continue
        body, carry = buf[:cut], buf[cut:]
        if b"\r" in body:
            body = body.replace(b"\r\n", b"\n")
        text = body.decode("utf-8", "replace")
        if text.endswith("\n"):
            text = text[:-1]
        yield from _scan(text, lineno, rx, block_rx)
        lineno += text.count("\n") + 1


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
