"""What a crash command line may be, and its pipes to grep/head/tail/wc, done here in Python.

crash would hand `!cmd`, `| cmd` and `> file` to a shell, `wr` writes kernel
memory, `extend` loads shared objects, and words it does not know go to gdb
(which has `shell`): so the first word must be a crash command we allow, and
nothing may leave crash but through these filters.
"""

from __future__ import annotations

import re
import shlex
from collections import deque
from typing import Any, Deque, List, Optional, Tuple

from ..errors import AgentError

# crash 8's built-in commands (`help`), minus those refused below.
ALLOWED = frozenset("""* ascii bpf bt btop dev dis eval files foreach fuser help ipcs irq kmem list log
mach mod mount net p ps pte ptob ptov rd runq sbitmap search set sig struct swap sym sys task timer
tree union vm vtop waitq whatis hex dec""".split())
REFUSED = {
    "wr": "wr writes to memory",
    "extend": "extend loads shared objects into crash",
    "gdb": "gdb passthrough can run shell commands and write files",
    "alias": "aliases could hide refused commands",
    "repeat": "repeat could run refused commands",
    "q": "the session stays open: use session_close", "quit": "the session stays open: use session_close",
    "exit": "the session stays open: use session_close",
}
SET_REFUSED = ("scroll", "gdb", "silent", "edit", "console", "namelist")
FILTERS = ("grep", "head", "tail", "wc")


def refuse(why: str) -> AgentError:
    return AgentError("refused", why, hint="pipes run in the agent: | grep [-i -v -c -w -E] PATTERN, "
                                          "| head [-n N], | tail [-n N], | wc [-l]")


def parse(line: str) -> Tuple[str, List["Filter"]]:
    """(the crash command, the filters of its pipes) or a refusal saying why."""
    if "\n" in line or "\r" in line:
        raise refuse("one crash command per call (no newlines)")
    segments = _split_pipes(line)
    command = segments[0].strip()
    if not command:
        raise refuse("empty crash command")
    _check_command(command)
    return command, [_filter(seg.strip()) for seg in segments[1:]]


def _split_pipes(line: str) -> List[str]:
    """Split on | outside quotes; > and < outside quotes are redirections."""
    segments: List[str] = []
    current: List[str] = []
    quote = ""
    for ch in line:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "|":
            segments.append("".join(current))
            current = []
            continue
        elif ch in "<>" and not segments:
            raise refuse("redirections (> or <) are refused: output stays in the agent's store")
        current.append(ch)
    segments.append("".join(current))
    return segments


def _check_command(command: str) -> None:
    if command.startswith("!"):
        raise refuse("! runs a shell command: refused")
    word = command.split()[0]
    if word in REFUSED:
        raise refuse("%s is refused: %s" % (word, REFUSED[word]))
    if word not in ALLOWED:
        raise refuse("%r is not a crash command this agent runs (crash would pass it to gdb)" % word)
    args = command.split()[1:]
    if word == "set" and args and args[0] in SET_REFUSED:
        raise refuse("set %s is refused: it would change how the session talks to the agent" % args[0])


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
            self.rx = re.compile(pattern if "w" not in flags else r"\b(?:%s)\b" % pattern,
                                 re.IGNORECASE if "i" in flags else 0)
        except re.error as exc:
            raise refuse("grep pattern %r is not a valid regular expression: %s" % (pattern, exc))
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
        argv = shlex.split(segment)
    except ValueError as exc:
        raise refuse("cannot parse pipe %r: %s" % (segment, exc))
    if not argv:
        raise refuse("empty pipe segment")
    name, args = argv[0], argv[1:]
    if name not in FILTERS:
        raise refuse("pipe to %r is refused: only %s run, and in the agent, not a shell"
                     % (name, ", ".join(FILTERS)))
    if name == "grep":
        flags, rest = _flags(args, "ivcwE")
        if len(rest) != 1:
            raise refuse("grep takes one pattern (and flags -i -v -c -w -E), got %r" % segment)
        return Grep(rest[0], flags)
    if name == "wc":
        flags, rest = _flags(args, "l")
        if rest:
            raise refuse("wc takes only -l here")
        return Wc("l" in flags)
    return (Head if name == "head" else Tail)(_count(name, args))


def _flags(args: List[str], known: str) -> Tuple[str, List[str]]:
    flags, rest = "", []  # type: Tuple[str, List[str]]
    for arg in args:
        if arg.startswith("-") and len(arg) > 1 and not rest:
            bad = set(arg[1:]) - set(known)
            if bad:
                raise refuse("unsupported flag %s (supported: %s)" % (arg, " ".join("-" + f for f in known)))
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
        raise refuse("%s takes -n N or -N, got %r" % (name, " ".join(args)))
    return int(text)


class Chain:
    """Lines through every filter in order."""

    def __init__(self, filters: List[Filter]) -> None:
        self.filters = filters

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
