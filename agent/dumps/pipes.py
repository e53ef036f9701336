"""Crash command lines and their pipes to grep/head/tail/wc, which run here in Python.

crash_grammar decides what crash receives: the part of the line before its
first |, checked against an allow-list the way crash parses it.  Everything
after that | is parsed here (shlex rules), never by crash, into filters.  A
chain's memory is bounded: each line is cut at LINE_MAX bytes as it streams
(Lines), and tail keeps at most TAIL_MAX of them.
"""

from __future__ import annotations

import re
import shlex
from collections import deque
from typing import Any, Deque, List, Optional, Tuple

from .. import protocol
from ..errors import AgentError
from . import crash_grammar

FILTERS = ("grep", "head", "tail", "wc")
LINE_MAX = 4096  # bytes of one line a filter sees; the rest is cut, with a marker
TAIL_MAX = 100000  # lines tail may keep: with LINE_MAX, what a chain holds stays bounded
FILTERS_HINT = (
    "pipes run in the agent: | grep [-i -v -c -w -E] PATTERN, | head [-n N], "
    "| tail [-n N] (N <= %d), | wc [-l]" % TAIL_MAX
)


def refuse(why: str, rule: str = "pipe") -> AgentError:
    return AgentError(protocol.REFUSED, why, hint=FILTERS_HINT, rule="crash." + rule)


def parse(line: str) -> Tuple[str, List[Filter]]:
    """(the crash command to send, the filters of its pipes) or a refusal saying why."""
    command, filters = crash_grammar.split_pipe(line)
    checked = crash_grammar.check(command)
    return checked.text, [_filter(seg.strip()) for seg in _segments(filters)] if filters is not None else []


def _segments(text: str) -> List[str]:
    """Split the filter text at each | outside shlex's quotes (a backslash escapes outside '...')."""
    segments: List[str] = []
    current: List[str] = []
    quote, escaped = "", False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "|":
            segments.append("".join(current))
            current = []
            continue
        current.append(ch)
    segments.append("".join(current))
    return segments


class Filter:
    """A line filter: feed() returns the lines to pass on; end() what is left at the end."""

    done = False

    def feed(self, line: str) -> List[str]:
        raise NotImplementedError

    def end(self) -> List[str]:
        return []


class Grep(Filter):
    def __init__(self, pattern: str, flags: str) -> None:
        try:
            self.rx = re.compile(
                pattern if "w" not in flags else r"\b(?:%s)\b" % pattern, re.IGNORECASE if "i" in flags else 0
            )
        except re.error as exc:
            raise refuse("grep pattern %r is not a valid regular expression: %s" % (pattern, exc), "filter") from None
        self.invert, self.count_only, self.count = "v" in flags, "c" in flags, 0

    def feed(self, line: str) -> List[str]:
        if bool(self.rx.search(line)) == self.invert:
            return []
        self.count += 1
        return [] if self.count_only else [line]

    def end(self) -> List[str]:
        return ["%d\n" % self.count] if self.count_only else []


class Head(Filter):
    def __init__(self, n: int) -> None:
        self.left = n
        self.done = n == 0

    def feed(self, line: str) -> List[str]:
        if self.left <= 0:
            return []
        self.left -= 1
        self.done = self.left == 0
        return [line]


class Tail(Filter):
    def __init__(self, n: int) -> None:
        self.lines: Deque[str] = deque(maxlen=n)

    def feed(self, line: str) -> List[str]:
        self.lines.append(line)
        return []

    def end(self) -> List[str]:
        return list(self.lines)


class Wc(Filter):
    def __init__(self, lines_only: bool) -> None:
        self.lines_only = lines_only
        self.counts = [0, 0, 0]

    def feed(self, line: str) -> List[str]:
        self.counts[0] += line.endswith("\n")
        self.counts[1] += len(line.split())
        self.counts[2] += len(line.encode())
        return []

    def end(self) -> List[str]:
        return ["%d\n" % self.counts[0] if self.lines_only else "%d %d %d\n" % tuple(self.counts)]


def _filter(segment: str) -> Filter:
    try:
        argv = shlex.split(segment, comments=False)
    except ValueError as exc:
        raise refuse("cannot parse pipe %r: %s" % (segment, exc), "filter") from None
    if not argv:
        raise refuse("empty pipe segment", "filter")
    name, args = argv[0], argv[1:]
    if name not in FILTERS:
        raise refuse("pipe to %r is refused: only %s run, and in the agent, not a shell" % (name, ", ".join(FILTERS)))
    if name == "grep":
        flags, rest = _flags(args, "ivcwE")
        if len(rest) != 1:
            raise refuse("grep takes one pattern (and flags -i -v -c -w -E), got %r" % segment, "filter")
        return Grep(rest[0], flags)
    if name == "wc":
        flags, rest = _flags(args, "l")
        if rest:
            raise refuse("wc takes only -l here", "filter")
        return Wc("l" in flags)
    return (Head if name == "head" else Tail)(_count(name, args))


def _flags(args: List[str], known: str) -> Tuple[str, List[str]]:
    flags, rest = "", []  # type: Tuple[str, List[str]]
    for arg in args:
        if arg.startswith("-") and len(arg) > 1 and not rest:
            bad = set(arg[1:]) - set(known)
            if bad:
                raise refuse("unsupported flag %s (supported: %s)" % (arg, " ".join("-" + f for f in known)), "filter")
            flags += arg[1:]
        else:
            rest.append(arg)
    return flags, rest


def _count(name: str, args: List[str]) -> int:
    if not args:
        return 10
    text: Optional[str] = None
    if len(args) == 2 and args[0] == "-n":
        text = args[1]
    elif len(args) == 1 and re.match(r"^-\d+$", args[0]):
        text = args[0][1:]
    if text is None or not text.isdigit():
        raise refuse("%s takes -n N or -N, got %r" % (name, " ".join(args)), "filter")
    if name == "tail" and int(text) > TAIL_MAX:
        raise refuse(
            "tail -n %s is refused: tail keeps its lines in the agent's memory, at most %d" % (text, TAIL_MAX),
            "tail-limit",
        )
    return int(text)


class Lines:
    """Bytes in, whole lines out, each at most LINE_MAX bytes: the rest of a longer line is
    counted, not held, and its line ends with a marker saying how much was cut."""

    def __init__(self) -> None:
        self.held = b""
        self.cut = 0

    def feed(self, data: bytes) -> List[str]:
        parts = data.split(b"\n")
        lines = [self._line(part) for part in parts[:-1]]
        self._hold(parts[-1])
        return lines

    def end(self) -> List[str]:
        """The last line, when the output did not end with a newline."""
        return [self._line(b"")] if self.held or self.cut else []

    def _hold(self, part: bytes) -> None:
        room = LINE_MAX - len(self.held)
        self.cut += max(0, len(part) - room)
        self.held += part[:room]

    def _line(self, part: bytes) -> str:
        self._hold(part)
        text = self.held.decode("utf-8", "replace")
        if self.cut:
            text += " [... %d more bytes of this line cut by the agent]" % self.cut
        self.held, self.cut = b"", 0
        return text + "\n"


class Chain:
    """Lines through every filter in order."""

    def __init__(self, filters: List[Filter]) -> None:
        self.filters = filters

    @staticmethod
    def lines() -> Lines:
        """The splitter this chain's input comes through (bytes in, bounded lines out)."""
        return Lines()

    @property
    def done(self) -> bool:
        """No more input can change the result (a head filled up)."""
        return any(f.done for f in self.filters)

    def feed(self, line: str) -> List[str]:
        return self._through([line], 0)

    def end(self) -> List[str]:
        """Flush each filter in turn; what one flushes still passes the later ones."""
        pending: List[str] = []
        for f in self.filters:
            fed: List[str] = []
            for line in pending:
                fed.extend(f.feed(line))
            pending = fed + f.end()
        return pending

    def _through(self, lines: List[str], start: int) -> List[str]:
        for f in self.filters[start:]:
            nxt: List[str] = []
            for line in lines:
                nxt.extend(f.feed(line))
            lines = nxt
        return lines


def describe(filters: List[Any]) -> List[str]:
    return [type(f).__name__.lower() for f in filters]
