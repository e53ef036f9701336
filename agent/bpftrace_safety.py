"""What a bpftrace program may not do here; checked on bpftrace's own tokens before bpftrace runs.

Layer 1 of the agent's security boundary for bpftrace (DESIGN.md). The program is
tokenized the way bpftrace 0.17's lexer does it (bpftrace_lexer), and the rules
look at those tokens:

- C never sees caller text: no preprocessor line but `#include <...>` of a kernel
  header (linux/, net/, uapi/, asm/, asm-generic/), no struct/union/enum
  definition, no `'` `\\` `%:` `??` outside strings (char literals, line splices,
  digraphs and trigraphs are how C text hides a `#`). Only programs whose sha256 is
  in bt/vetted.sha256 (the bundled tools and this distribution's) may do more.
- No call bpftrace marks unsafe or that reaches outside tracing (UNSAFE_CALLS), and
  only calls this module knows (KNOWN_CALLS).
- No watchpoints, no probe type it does not know, no iterator pins, no positional
  parameter in an attach point, and u(ret)probe/usdt targets only in system dirs.
- Newer bpftrace syntax that reads files or changes limits (`import`, `config =`).

After a program passes, bpftrace_ast.check_dump() applies the same call and probe
rules to bpftrace's own AST (`bpftrace -d`): C macros from included headers are
expanded by bpftrace after clang ran, where no tokenizer can see them.

Every refusal is AgentError("unsafe_program", ..., line, column, construct, rule).
"""

from __future__ import annotations

import hashlib
import os
import pkgutil
import re
from typing import Any, Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple

from . import protocol
from .bpftrace_lexer import CALL_BUILTINS, CALLS, Token, code, position, tokenize
from .errors import AgentError

MAX_PROGRAM_BYTES = 64 * 1024
MAX_ARGS = 9
MAX_ARG_CHARS = 256
VETTED_FILE = "bt/vetted.sha256"

# call -> why it is refused. The first three need --unsafe (never passed); the rest
# bpftrace allows. signal_thread and write_user are newer bpftrace's; names starting
# with "__" (newer bpftrace's internal helpers such as __signal, __override) too.
UNSAFE_CALLS: Dict[str, str] = {
    "system": "it runs a shell command on the host as root (bpftrace marks it unsafe)",
    "signal": "it sends signals to traced processes, which can kill them (bpftrace marks it unsafe)",
    "signal_thread": "it sends signals to traced threads (bpftrace marks it unsafe)",
    "override": "it changes a kernel function's return value (bpftrace marks it unsafe)",
    "write_user": "it writes into traced processes' memory (bpftrace marks it unsafe)",
    "cat": "it prints any file on the host, read as root",
    "skboutput": "it creates or truncates a file at any path on the host",
    "unwatch": "it belongs to watchpoints, which are refused",
}
UNSAFE_BUILTINS = UNSAFE_CALLS  # the old name, kept for callers
# Calls known to be harmless: bpftrace 0.17's (lexer.l {call}) and newer releases'
# builtins and stdlib macros (v0.26 pre_type_check.cpp CALL_NARGS, stdlib/*.bt).
KNOWN_CALLS: FrozenSet[str] = frozenset(
    set(CALLS + CALL_BUILTINS)
    | {
        "assert",
        "assert_str",
        "cgroup",
        "check_key",
        "comm",
        "container_of",
        "cpid",
        "cpu",
        "curtask",
        "default_str_length",
        "dw_ustack",
        "elapsed",
        "errorf",
        "fail",
        "find",
        "func",
        "gid",
        "has_cpid",
        "has_key",
        "is_array",
        "is_err",
        "is_integer",
        "is_literal",
        "is_ptr",
        "is_str",
        "is_unsigned_integer",
        "jiffies",
        "kfunc_allowed",
        "kfunc_exist",
        "leader_comm",
        "leader_tid",
        "len",
        "memcmp",
        "ncpus",
        "nsecs",
        "numaid",
        "offsetof",
        "pcomm",
        "percpu_kaddr",
        "pid",
        "ppid",
        "probe",
        "probetype",
        "rand",
        "retval",
        "signal_name",
        "socket_cookie",
        "stack_len",
        "static_assert",
        "str_concat",
        "strcap",
        "strlen",
        "strstr",
        "syscall_name",
        "tid",
        "tseries",
        "typeof",
        "typeinfo",
        "uid",
        "usdt_arg",
        "usermode",
        "username",
        "warnf",
    }
    - set(UNSAFE_CALLS)
)
# provider -> canonical name (bpftrace 0.17 types.h PROBE_LIST, plus newer releases' probe_types.h).
PROBE_TYPES: Dict[str, str] = {
    "kprobe": "kprobe",
    "k": "kprobe",
    "kretprobe": "kretprobe",
    "kr": "kretprobe",
    "uprobe": "uprobe",
    "u": "uprobe",
    "uretprobe": "uretprobe",
    "ur": "uretprobe",
    "usdt": "usdt",
    "U": "usdt",
    "BEGIN": "BEGIN",
    "END": "END",
    "begin": "BEGIN",
    "end": "END",
    "self": "self",
    "bench": "bench",
    "tracepoint": "tracepoint",
    "t": "tracepoint",
    "rawtracepoint": "rawtracepoint",
    "rt": "rawtracepoint",
    "profile": "profile",
    "p": "profile",
    "interval": "interval",
    "i": "interval",
    "software": "software",
    "s": "software",
    "hardware": "hardware",
    "h": "hardware",
    "kfunc": "kfunc",
    "f": "kfunc",
    "fentry": "kfunc",
    "kretfunc": "kretfunc",
    "fr": "kretfunc",
    "fexit": "kretfunc",
    "iter": "iter",
    "it": "iter",
}
UNSAFE_PROBES: Dict[str, str] = {
    name: "watchpoints can SIGSTOP the traced process" for name in ("watchpoint", "w", "asyncwatchpoint", "aw")
}
_WATCHPOINTS = {
    "watchpoint": "watchpoint",
    "w": "watchpoint",
    "asyncwatchpoint": "asyncwatchpoint",
    "aw": "asyncwatchpoint",
}
FILE_PROBES = ("uprobe", "uretprobe", "usdt")
CGROUP_DIR = "/sys/fs/cgroup/"
SYSTEM_DIRS = ("/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/opt/")
HEADER_DIRS = ("linux", "net", "uapi", "asm", "asm-generic")
# rule -> what to do instead; at one offset, the rule listed first is the one reported
HINTS: Dict[str, str] = {
    "control_char": "send plain text: tabs and newlines only",
    "preprocessor": "drop it: only #include <linux/...h> of kernel headers is allowed (BTF has the types)",
    "include": "include a kernel header such as <linux/sched.h>, or rely on BTF",
    "c_definition": "use the kernel's own types (BTF) and casts such as (struct task_struct *)curtask",
    "struct_name": "write the type as struct NAME followed by * or )",
    "char_literal": 'use a string "..." or a number instead of a C character literal',
    "backslash": "write it on one line; backslashes belong inside strings only",
    "digraph": "write # and brackets plainly",
    "trigraph": "write it without ??",
    "newer_syntax": "leave it out: the agent sets bpftrace's configuration itself",
    "call": "print what you need with printf or maps instead",
    "unknown_call": "use bpftrace's builtin functions (printf, count, hist, str, ...)",
    "probe_type": "use tracepoint, kprobe, uprobe, profile or interval probes",
    "probe_param": "write the attach point out in full; positional parameters go in predicates",
    "probe_target": "give the full path of a binary or library under /usr, /bin, /sbin, /lib, /lib64 or /opt",
    "iter_pin": "drop the pin: iter:NAME without a third part",
    "syntax": "fix the program: bpftrace's own lexer rejects this",
    "ast": "bpftrace's own parse of the program showed this: rewrite it without the construct",
}
_ARG_RE = re.compile(r"[A-Za-z0-9_.:/@%+=,-]*\Z")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_INCLUDE_RE = re.compile(r"#[ \t]*include\b")
_HEADER_RE = re.compile(
    r"#[ \t]*include[ \t]*<(%s)/(?:[A-Za-z0-9_][A-Za-z0-9_-]*/)*[A-Za-z0-9_][A-Za-z0-9_-]*\.h>"
    r"[ \t]*\Z" % "|".join(re.escape(d) for d in HEADER_DIRS)
)
_TYPE_NAME_RE = re.compile(r"(?:struct|union|enum) [A-Za-z_][A-Za-z0-9_]*\Z")
_TARGET_RE = re.compile(r"[A-Za-z0-9_./+-]+\Z")
_NAME_KINDS = ("IDENT", "CALL", "CALL_BUILTIN", "BUILTIN", "STACK_MODE")
_C_KINDS = ("CPREPROC", "STRUCT_DEFN", "STRUCT_TYPE", "STRUCT_LOST")


class Finding(NamedTuple):
    """One refused construct, at a source offset."""

    offset: int
    rule: str
    construct: str
    message: str


class AttachPoint(NamedTuple):
    """An attach point as bpftrace's AttachPointParser splits it (lex_attachpoint)."""

    offset: int
    parts: List[str]
    param: bool


class Summary(NamedTuple):
    """What the program calls and probes: compared with bpftrace's AST in the tests."""

    calls: FrozenSet[str]
    builtins: FrozenSet[str]
    probe_types: FrozenSet[str]


class Parsed(NamedTuple):
    """A program's code tokens, each with its region: cdef, ap (attach point), pred or block."""

    tokens: List[Token]
    regions: List[str]
    attach_points: List[AttachPoint]


def check_program(program: str) -> None:
    """Raise `unsafe_program` naming the first refused construct, with its line, column and rule."""
    try:
        size = len(program.encode("utf-8"))
    except UnicodeEncodeError:
        raise AgentError(
            protocol.BAD_PROGRAM, "program is not valid Unicode text", hint="send plain UTF-8 text"
        ) from None
    if size > MAX_PROGRAM_BYTES:
        raise AgentError(
            protocol.BAD_PROGRAM,
            "program is over %d KiB" % (MAX_PROGRAM_BYTES // 1024),
            hint="trace less in one program",
        )
    findings = problems(program)
    if findings:
        raise refusal(program, findings[0])


def as_run(program: str) -> str:
    """The program as bpftrace reads it: Bpftrace.run() puts its own interval probe on a new line.

    The newline matters to the lexer: lexer.l's "//".*$ needs one, so a // at the very end
    of a program is a comment only because of it.
    """
    return program.rstrip("\n") + "\n"


def problems(program: str) -> List[Finding]:
    """Every refused construct in the program, first in source order first."""
    control = _CONTROL_RE.search(program)
    if control is not None:
        return [
            Finding(
                control.start(),
                "control_char",
                repr(control.group()),
                "control character %r is refused" % control.group(),
            )
        ]
    vetted = is_vetted(program)
    program = as_run(program)
    tokens = tokenize(program)
    parsed = parse(tokens)
    found = _lexer_errors(tokens) + _newer_syntax(parsed) + _call_rules(parsed, vetted)
    found += [f for ap in parsed.attach_points for f in probe_rules(ap)]
    if not vetted:
        found += _c_rules(program, tokens)
    return sorted(found, key=lambda f: (f.offset, list(HINTS).index(f.rule)))


def refusal(program: str, finding: Finding) -> AgentError:
    """The AgentError for a finding: `line L, column C: ...` plus line, column, construct and rule."""
    line, column = position(program, finding.offset)
    return AgentError(
        protocol.UNSAFE_PROGRAM,
        "line %d, column %d: %s" % (line, column, finding.message),
        hint=HINTS[finding.rule],
        line=line,
        column=column,
        construct=finding.construct,
        rule="bpftrace." + finding.rule,
    )


def is_vetted(program: str) -> bool:
    """Whether the program is one of the vetted tools (by sha256 of its text)."""
    return hashlib.sha256(program.encode("utf-8")).hexdigest() in vetted_hashes()


_VETTED: List[FrozenSet[str]] = []


def vetted_hashes() -> FrozenSet[str]:
    """The sha256 list in bt/vetted.sha256 (`sha256sum` format), read once."""
    if not _VETTED:
        data = pkgutil.get_data(__package__ or "crashfleet.agent", VETTED_FILE) or b""
        lines = data.decode("ascii", "replace").splitlines()
        _VETTED.append(frozenset(line.split()[0] for line in lines if line.strip() and not line.startswith("#")))
    return _VETTED[0]


# -- the program's structure (parser.yy: c_definitions probes; probe: attach_points pred block)


def parse(tokens: Sequence[Token]) -> Parsed:
    """Split code tokens into regions and attach points, following parser.yy's probe rule."""
    toks = code(list(tokens))
    regions: List[str] = []
    points: List[AttachPoint] = []
    current: List[Token] = []
    region, depth = "ap", 0
    for tok in toks:
        text = tok.value if tok.kind == "PUNCT" else None
        if region == "ap":
            if tok.kind in ("CPREPROC", "STRUCT_DEFN") and not current:
                regions.append("cdef")
                continue
            regions.append("block" if text == "{" else "ap")
            if text in _AFTER_ATTACH_POINT:
                points += _attach_point(current)
                current = []
                region, depth = _AFTER_ATTACH_POINT[text]
            else:
                current.append(tok)
        elif region == "pred":
            regions.append("pred")
            region = "ap" if tok.kind == "ENDPRED" else "pred"
        else:
            regions.append("block")
            depth += {"{": 1, "}": -1}.get(text or "", 0)
            region = "ap" if depth == 0 else "block"
    points += _attach_point(current)
    return Parsed(toks, regions, points)


# what ends an attach point: "{" opens the block, "/" a predicate, "," starts another attach point
_AFTER_ATTACH_POINT = {"{": ("block", 1), "/": ("pred", 0), ",": ("ap", 0)}


def _attach_point(tokens: List[Token]) -> List[AttachPoint]:
    """parser.yy attach_point_def (tokens glued) then AttachPointParser::lex_attachpoint (split on ':')."""
    if not tokens:
        return []
    raw = []
    for tok in tokens:
        if tok.kind == "STRING":
            raw.append('"%s"' % tok.value.replace('"', '\\"'))
        else:
            raw.append(tok.value)
    parts, param = split_attach_point("".join(raw))
    param = param or any(t.kind in ("PARAM", "PARAMCOUNT") for t in tokens)
    return [AttachPoint(tokens[0].start, parts, param)]


def split_attach_point(raw: str) -> Tuple[List[str], bool]:
    """lex_attachpoint: ':' splits outside quotes, quotes toggle, '\\' escapes in quotes; '$' is a parameter."""
    parts: List[str] = []
    argument: List[str] = []
    quoted, param, i = False, False, 0
    while i < len(raw):
        char = raw[i]
        if char == ":" and not quoted:
            parts.append("".join(argument))
            argument = []
        elif char == '"':
            quoted = not quoted
        elif quoted and char == "\\" and i + 1 < len(raw):
            i += 1
            argument.append(raw[i])
        else:
            param = param or (char == "$" and not quoted)
            argument.append(char)
        i += 1
    parts.append("".join(argument))
    return parts, param


def summary(program: str) -> Summary:
    """The calls, builtins and probe types the program has, as the tokens say."""
    parsed = parse(tokenize(as_run(program)))
    calls = {name for _, name in _calls(parsed)}
    builtins = set()
    for i, tok in enumerate(parsed.tokens):
        if (
            tok.kind in ("BUILTIN", "CALL_BUILTIN")
            and parsed.regions[i] in ("pred", "block")
            and not _after_field(parsed.tokens, i)
            and _next_text(parsed.tokens, i) != "("
        ):
            builtins.add(tok.value)
    types = {canonical_probe_type(ap.parts[0]) for ap in parsed.attach_points}
    return Summary(frozenset(calls), frozenset(builtins), frozenset(types))


def canonical_probe_type(provider: str) -> str:
    """A probe type's full name, as bpftrace prints it (t -> tracepoint, aw -> asyncwatchpoint)."""
    return PROBE_TYPES.get(provider) or _WATCHPOINTS.get(provider) or provider


def _calls(parsed: Parsed) -> List[Tuple[int, str]]:
    """(offset, name) of every name followed by '(' (parser.yy call: CALL "(" vargs ")")."""
    return [
        (tok.start, tok.value)
        for i, tok in enumerate(parsed.tokens)
        if tok.kind in _NAME_KINDS and _next_text(parsed.tokens, i) == "("
    ]


def _next_text(tokens: List[Token], i: int) -> Optional[str]:
    return tokens[i + 1].value if i + 1 < len(tokens) and tokens[i + 1].kind == "PUNCT" else None


def _after_field(tokens: List[Token], i: int) -> bool:
    """Whether tokens[i] is a field name (after . or ->), which bpftrace does not read as a builtin."""
    return i > 0 and tokens[i - 1].kind == "PUNCT" and tokens[i - 1].value in (".", "->")


# -- the rules


def _lexer_errors(tokens: List[Token]) -> List[Finding]:
    """What bpftrace's own lexer rejects (it would fail before clang; we say so first)."""
    return [
        Finding(
            t.start,
            "syntax",
            {"STRING": '"', "COMMENT": "/*"}.get(t.kind, t.value[:20]),
            "%s: bpftrace's lexer rejects this too" % t.error,
        )
        for t in tokens
        if t.error
    ]


def _c_rules(program: str, tokens: List[Token]) -> List[Finding]:
    """Nothing the caller writes reaches clang: preprocessor lines, definitions, C-only characters."""
    found = []
    for tok in tokens:
        if tok.kind == "CPREPROC" and not _HEADER_RE.match(tok.value):
            found.append(_preprocessor(tok))
        elif tok.kind == "STRUCT_DEFN":
            found.append(
                Finding(
                    tok.start,
                    "c_definition",
                    tok.value.split()[0],
                    "%s definitions are refused: the text goes to clang, not to bpftrace" % tok.value.split()[0],
                )
            )
        elif tok.kind in ("STRUCT_TYPE", "STRUCT_LOST") and not _TYPE_NAME_RE.match(tok.value):
            found.append(
                Finding(
                    tok.start,
                    "struct_name",
                    tok.value.split()[0] if tok.value else "struct",
                    "%r is refused: after struct/union/enum only a type name then * or )" % tok.value[:40],
                )
            )
        elif tok.kind == "COMMENT" and tok.value.startswith("//") and tok.value.endswith("\\"):
            found.append(
                Finding(
                    tok.end - 1,
                    "backslash",
                    "\\",
                    "a '\\' ending a // comment is refused "
                    "(C would splice the next line into the comment; bpftrace does not)",
                )
            )
    return found + _c_characters(program, tokens)


def _preprocessor(tok: Token) -> Finding:
    if _INCLUDE_RE.match(tok.value):
        return Finding(
            tok.start,
            "include",
            "#include",
            "%s is refused: only kernel headers like "
            "<linux/sched.h> may be included (a quoted, absolute or relative path can read any file)"
            % tok.value.strip()[:80],
        )
    return Finding(
        tok.start,
        "preprocessor",
        tok.value.split()[0][:20] if tok.value.strip() else "#",
        "preprocessor line %r is refused: only #include <linux/...h> is allowed" % tok.value[:60],
    )


_C_CHARS = (
    ("'", "char_literal", "C character literals are refused"),
    ("\\", "backslash", "'\\' outside a string is refused (a C line splice)"),
    ("%:", "digraph", "'%:' is refused (the C digraph for #)"),
    ("??", "trigraph", "'??' is refused (C trigraphs such as ??= hide #)"),
)


def _c_characters(program: str, tokens: List[Token]) -> List[Finding]:
    """' \\ %: ?? anywhere but in strings and comments (there they are bpftrace's or nobody's)."""
    text = list(program)
    for tok in tokens:
        if tok.kind in ("STRING", "COMMENT", "SHEBANG"):
            text[tok.start : tok.end] = [" "] * (tok.end - tok.start)
    blank = "".join(text)
    found = []
    for chars, rule, message in _C_CHARS:
        at = blank.find(chars)
        if at >= 0:
            found.append(Finding(at, rule, chars, message))
    return found


def _call_rules(parsed: Parsed, vetted: bool) -> List[Finding]:
    """Refused calls (also as bare names outside attach points), then unknown ones."""
    found = []
    for i, tok in enumerate(parsed.tokens):
        in_code = parsed.regions[i] in ("pred", "block") and not _after_field(parsed.tokens, i)
        if tok.kind in _NAME_KINDS and in_code and tok.value in UNSAFE_CALLS:
            found.append(_unsafe_call(tok.start, tok.value))
    for offset, name in _calls(parsed):
        if name in UNSAFE_CALLS or name.startswith("__"):
            found.append(_unsafe_call(offset, name))
        elif name == "cgroupid":
            found += _cgroupid(parsed, offset)
        elif name not in KNOWN_CALLS and not vetted:
            found.append(
                Finding(
                    offset,
                    "unknown_call",
                    name,
                    "%s() is refused: not a bpftrace function the "
                    "agent knows (a C macro from a header can hide another call)" % name,
                )
            )
    return found


def _cgroupid(parsed: Parsed, offset: int) -> List[Finding]:
    """cgroupid("PATH") resolves PATH as root when compiling: only a path under /sys/fs/cgroup/."""
    i = next(i for i, tok in enumerate(parsed.tokens) if tok.start == offset)
    arg = parsed.tokens[i + 2] if i + 2 < len(parsed.tokens) else None
    if (
        arg is not None
        and arg.kind == "STRING"
        and arg.value.startswith(CGROUP_DIR)
        and ".." not in arg.value.split("/")
        and _next_text(parsed.tokens, i + 2) == ")"
    ):
        return []
    return [
        Finding(
            offset,
            "call",
            "cgroupid",
            "cgroupid() is refused but for a literal path under %s: it "
            "tells whether any path exists, looked up as root" % CGROUP_DIR,
        )
    ]


def _unsafe_call(offset: int, name: str) -> Finding:
    why = UNSAFE_CALLS.get(name, "a bpftrace internal helper (newer releases reach unsafe BPF helpers with them)")
    return Finding(offset, "call", name, "%s() is refused: %s" % (name, why))


def probe_rules(ap: AttachPoint) -> List[Finding]:
    """Probe type, iterator pins, parameters and file targets of one attach point."""
    provider = ap.parts[0]
    if provider in UNSAFE_PROBES:
        return [
            Finding(
                ap.offset, "probe_type", provider, "%s probes are refused: %s" % (provider, UNSAFE_PROBES[provider])
            )
        ]
    if ap.param:
        return [
            Finding(
                ap.offset,
                "probe_param",
                "$",
                "a positional parameter in attach point %r is refused: "
                "its value could name any probe or file" % ":".join(ap.parts)[:80],
            )
        ]
    kind = PROBE_TYPES.get(provider)
    if kind is None:
        return [
            Finding(
                ap.offset,
                "probe_type",
                provider[:40],
                "%r probes are refused: not a probe type "
                "the agent knows (wildcards in the type are refused too)" % provider[:40],
            )
        ]
    if kind == "iter" and len(ap.parts) > 2:
        return [
            Finding(
                ap.offset,
                "iter_pin",
                "iter",
                "iter probes with a pin are refused: the pin writes a file under /sys/fs/bpf",
            )
        ]
    if kind in FILE_PROBES:
        why = target_problem(ap.parts[1] if len(ap.parts) > 1 else "")
        if why:
            return [Finding(ap.offset, "probe_target", provider, "%s probe target is refused: %s" % (provider, why))]
    return []


def target_problem(target: str) -> Optional[str]:
    """Why a u(ret)probe/usdt target may not be probed, or None: system binaries and libraries only."""
    if not target or not _TARGET_RE.match(target):
        return "%r is not a plain path or name (letters, digits, _ . / + -)" % target[:80]
    if "/" not in target:
        return None if not target.startswith(".") else "%r is a relative path" % target
    if ".." in target.split("/") or not target.startswith(SYSTEM_DIRS):
        return "%r is not an absolute path under %s" % (target[:80], ", ".join(d.rstrip("/") for d in SYSTEM_DIRS))
    real = os.path.realpath(target)
    if not real.startswith(SYSTEM_DIRS):
        return "%r leads to %r, outside the system dirs" % (target[:80], real[:80])
    return None


def _newer_syntax(parsed: Parsed) -> List[Finding]:
    """Newer bpftrace's `import "file"` (reads files) and `config = {...}` (changes the pinned limits)."""
    found = []
    for i, tok in enumerate(parsed.tokens):
        if tok.kind == "IDENT" and tok.value == "import":
            found.append(Finding(tok.start, "newer_syntax", "import", "import is refused: it reads files"))
        elif (
            tok.kind == "IDENT"
            and tok.value == "config"
            and parsed.regions[i] == "ap"
            and i + 1 < len(parsed.tokens)
            and parsed.tokens[i + 1].value == "="
        ):
            found.append(
                Finding(
                    tok.start, "newer_syntax", "config", "config = {...} is refused: the agent pins bpftrace's limits"
                )
            )
    return found


# -- helpers for the rest of the agent


def has_preprocessor(program: str) -> bool:
    """Whether C macros of included headers can reach the program (it has a preprocessor line).

    Without one, clang sees only bpftrace's fixed headers (stddef.h, limits.h, ...), BTF
    types and, with kernel headers installed, kconfig.h: their macros expand to constants
    or to names bpftrace cannot call, so the AST says nothing the tokens did not.
    """
    return any(tok.kind == "CPREPROC" for tok in tokenize(as_run(program)))


def blank_comments_and_strings(program: str) -> str:
    """The program with comments and string literals blanked (newlines kept): positions stay the same."""
    text = list(program)
    for tok in tokenize(as_run(program)):
        if tok.kind in ("COMMENT", "STRING", "SHEBANG"):
            text[tok.start : tok.end] = [c if c == "\n" else " " for c in program[tok.start : tok.end]]
    return "".join(text)


def check_args(args: Any) -> List[str]:
    """Positional parameters ($1..): short plain words, never something bpftrace could read as an option."""
    if not isinstance(args, list) or len(args) > MAX_ARGS:
        raise AgentError(protocol.BAD_PARAMS, "args must be a list of at most %d values" % MAX_ARGS)
    out = []
    for value in args:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise AgentError(protocol.BAD_PARAMS, "argument %r must be a string or a number" % (value,))
        text = str(value)
        if len(text) > MAX_ARG_CHARS or not _ARG_RE.match(text):
            raise AgentError(
                protocol.BAD_PARAMS,
                "argument %r has characters other than letters, digits and "
                "_.:/@%%+=,-, or is over %d characters" % (text[:40], MAX_ARG_CHARS),
            )
        out.append(text)
    return out
