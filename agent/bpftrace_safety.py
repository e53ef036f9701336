"""What a bpftrace program may not do here; checked on the agent before bpftrace sees it.

bpftrace itself refuses system/signal/override without --unsafe (which we never
pass); we refuse them earlier with a clearer message, and also refuse builtins
and probes that bpftrace allows but that reach outside tracing: reading any file
as root (cat), writing files (skboutput), stopping processes (watchpoints), and
reading arbitrary files through the C preprocessor (#include "...").
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Tuple

from .errors import AgentError

MAX_PROGRAM_BYTES = 64 * 1024
MAX_ARGS = 9
MAX_ARG_CHARS = 256

# builtin -> why it is refused
UNSAFE_BUILTINS: Dict[str, str] = {
    "system": "it runs a shell command on the host as root (bpftrace marks it unsafe)",
    "signal": "it sends signals to traced processes, which can kill them (bpftrace marks it unsafe)",
    "override": "it changes a kernel function's return value (bpftrace marks it unsafe)",
    "cat": "it prints any file on the host, read as root",
    "skboutput": "it writes packet data to files on the host",
    "unwatch": "it belongs to watchpoints, which are refused",
}
UNSAFE_PROBES: Dict[str, str] = {
    "watchpoint": "watchpoints can SIGSTOP the traced process",
    "asyncwatchpoint": "watchpoints can SIGSTOP the traced process",
    "w": "watchpoints can SIGSTOP the traced process",
    "aw": "watchpoints can SIGSTOP the traced process",
}
_CALL_RE = re.compile(r"(?<![@$\w])(%s)\s*\(" % "|".join(UNSAFE_BUILTINS))
_PROBE_RE = re.compile(r"(?<![@$\w.>])(%s):" % "|".join(UNSAFE_PROBES))
_INCLUDE_RE = re.compile(r"^[ \t]*#[ \t]*include\b(.*)$", re.M)
_SAFE_HEADER_RE = re.compile(r"[ \t]*<[A-Za-z0-9_][A-Za-z0-9_./-]*\.h>[ \t]*$")
_ARG_RE = re.compile(r"[A-Za-z0-9_.:/@%+=,-]*\Z")


def check_program(program: str) -> None:
    """Raise `unsafe_program` naming the first refused construct, with its line and column."""
    if len(program.encode("utf-8")) > MAX_PROGRAM_BYTES:
        raise AgentError("bad_program", "program is over %d KiB" % (MAX_PROGRAM_BYTES // 1024),
                         hint="trace less in one program")
    code = blank_comments_and_strings(program)
    for match in _INCLUDE_RE.finditer(code):
        target = program[match.start(1):match.end(1)]
        if ".." in target or not _SAFE_HEADER_RE.match(target):
            line, col = _position(program, match.start())
            raise AgentError("unsafe_program", "line %d: #include%s is refused: only system headers "
                             "like <linux/sched.h> may be included (a quoted or relative path can read "
                             "any file)" % (line, target.rstrip()), hint="include <header.h> or rely on BTF",
                             line=line, column=col, construct="#include")
    for match in _CALL_RE.finditer(code):
        name = match.group(1)
        line, col = _position(program, match.start(1))
        raise AgentError("unsafe_program", "line %d, column %d: %s() is refused: %s"
                         % (line, col, name, UNSAFE_BUILTINS[name]),
                         hint="print what you need with printf or maps instead", line=line, column=col,
                         construct=name)
    for match in _PROBE_RE.finditer(code):
        name = match.group(1)
        line, col = _position(program, match.start(1))
        raise AgentError("unsafe_program", "line %d, column %d: %s probes are refused: %s"
                         % (line, col, name, UNSAFE_PROBES[name]),
                         hint="use tracepoint, kprobe or uprobe probes", line=line, column=col, construct=name)


def check_args(args: Any) -> List[str]:
    """Positional parameters ($1..): short plain words, never something bpftrace could read as an option."""
    if not isinstance(args, list) or len(args) > MAX_ARGS:
        raise AgentError("bad_params", "args must be a list of at most %d values" % MAX_ARGS)
    out = []
    for value in args:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise AgentError("bad_params", "argument %r must be a string or a number" % (value,))
        text = str(value)
        if len(text) > MAX_ARG_CHARS or not _ARG_RE.match(text):
            raise AgentError("bad_params", "argument %r has characters other than letters, digits and "
                             "_.:/@%%+=,-, or is over %d characters" % (text[:40], MAX_ARG_CHARS))
        out.append(text)
    return out


def blank_comments_and_strings(program: str) -> str:
    """The program with comments and string literals blanked (newlines kept): positions stay the same."""
    out = []
    i, n = 0, len(program)
    while i < n:
        two = program[i:i + 2]
        if two == "//":
            end = program.find("\n", i)
            end = n if end < 0 else end
        elif two == "/*":
            end = program.find("*/", i + 2)
            end = n if end < 0 else end + 2
        elif program[i] == '"':
            end = _string_end(program, i)
        else:
            out.append(program[i])
            i += 1
            continue
        out.append(re.sub(r"[^\n]", " ", program[i:end]))
        i = end
    return "".join(out)


def _string_end(program: str, start: int) -> int:
    i = start + 1
    while i < len(program):
        if program[i] == "\\":
            i += 2
            continue
        if program[i] in '"\n':
            return i + 1
        i += 1
    return len(program)


def _position(program: str, offset: int) -> Tuple[int, int]:
    """1-based line and column, as bpftrace counts them."""
    line = program.count("\n", 0, offset) + 1
    return line, offset - (program.rfind("\n", 0, offset) + 1) + 1
