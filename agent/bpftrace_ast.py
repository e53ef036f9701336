"""bpftrace's own parse of a program (the AST `bpftrace -d` prints), checked with the token rules.

bpftrace parses a program twice: before clang (what bpftrace_safety checks) and
after, with the C macros of the included headers expanded into the program
(lexer.l's {ident} rule). Only the AST shows that second parse. bpftrace 0.17
prints it as "AST after: parser", then "Program", one line per attach point
(indent 1, types and aliases resolved, parameters substituted) and one line per
node below it ("call: NAME", "builtin: NAME"); strings are printed escaped, so a
string cannot fake a line.
"""

from __future__ import annotations

import re
from typing import FrozenSet, List, NamedTuple, Optional

from . import bpftrace_safety as safety
from .errors import AgentError

SECTION = "AST after: parser"
_CALL_RE = re.compile(r"^ +call: (\S+)", re.M)
_BUILTIN_RE = re.compile(r"^ +builtin: (\S+)", re.M)


class Ast(NamedTuple):
    """What bpftrace's parser made of a program."""

    calls: FrozenSet[str]
    builtins: FrozenSet[str]
    probes: List[str]

    @property
    def probe_types(self) -> FrozenSet[str]:
        return frozenset(safety.canonical_probe_type(p.split(":")[0]) for p in self.probes)


def read_dump(dump: str) -> Optional[Ast]:
    """The parser section of a `bpftrace -d` dump, or None (no such section: the parse failed, or
    this bpftrace prints another format)."""
    start = dump.find(SECTION)
    if start < 0:
        return None
    end = dump.find("\nAST after:", start + len(SECTION))
    lines = dump[start : end if end >= 0 else len(dump)].splitlines()
    if "Program" not in lines:
        return None
    body = lines[lines.index("Program") + 1 :]
    text = "\n".join(body)
    probes = [line[1:] for line in body if line.startswith(" ") and not line.startswith("  ")]
    return Ast(frozenset(_CALL_RE.findall(text)), frozenset(_BUILTIN_RE.findall(text)), probes)


def problems(program: str, dump: str) -> List[safety.Finding]:
    """The call and probe rules applied to bpftrace's AST of `program` (none when there is no AST)."""
    ast = read_dump(dump)
    if ast is None:
        return []
    vetted = safety.is_vetted(program)
    found = []
    for name in sorted(ast.calls):
        if name in safety.UNSAFE_CALLS or name.startswith("__"):
            found.append(safety.Finding(0, "call", name, "bpftrace's parse calls %s(), which is refused" % name))
        elif name not in safety.KNOWN_CALLS and not vetted:
            found.append(
                safety.Finding(
                    0, "unknown_call", name, "bpftrace's parse calls %s(), a function the agent does not know" % name
                )
            )
    for probe in ast.probes:
        parts, _param = safety.split_attach_point(probe)
        for finding in safety.probe_rules(safety.AttachPoint(0, parts, False)):
            found.append(finding._replace(message="bpftrace's parse: " + finding.message))
    return found


def check_dump(program: str, dump: str) -> None:
    """Raise `unsafe_program` if bpftrace's own parse of the program breaks a rule the tokens kept."""
    found = problems(program, dump)
    if found:
        error = safety.refusal(program, found[0])
        raise AgentError(error.kind, error.message, hint=safety.HINTS["ast"], seen_by="bpftrace -d", **error.extra)
