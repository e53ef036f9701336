"""bpftrace 0.17's lexer (src/lexer.l) in Python: the tokens bpftrace itself reads from a program.

The safety checks look at these tokens, never at raw text, so that a construct is
seen exactly where bpftrace sees it: a `"` inside a struct definition is not a
string (lexer.l's STRUCT state copies the definition verbatim for clang), a `//`
comment ends at the newline even after a `\\`, and `#` starts a preprocessor line
anywhere. Like flex, each step takes the longest match, the earlier rule on a
tie, with trailing context counted in the length. The lexer never raises: what
bpftrace would reject comes back as a token with `error` set.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, NamedTuple, Pattern, Tuple


class Token(NamedTuple):
    """One token: `kind` is bpftrace's token name (see KINDS), `value` its decoded text."""

    kind: str
    start: int
    end: int
    value: str
    error: str = ""


# Token kinds. bpftrace's own names where it has one; COMMENT, SHEBANG and ERROR are
# text its lexer drops or refuses; STRUCT_TYPE is the IDENT "struct foo" of a cast and
# STRUCT_LOST a STRUCT state that ended without a token (lexer.l pops it on a bare "}").
KINDS = (
    "COMMENT",
    "SHEBANG",
    "STACK_MODE",
    "BUILTIN",
    "CALL",
    "CALL_BUILTIN",
    "INT",
    "PATH",
    "MAP",
    "VAR",
    "PUNCT",
    "ENDPRED",
    "PARAM",
    "PARAMCOUNT",
    "CPREPROC",
    "KEYWORD",
    "STRING",
    "STRUCT_TYPE",
    "STRUCT_DEFN",
    "STRUCT_LOST",
    "IDENT",
    "ERROR",
)

# lexer.l: builtin, call and call_and_builtin (bpftrace v0.17.0).
BUILTINS = (
    "arg[0-9]",
    "args",
    "cgroup",
    "comm",
    "cpid",
    "numaid",
    "cpu",
    "ctx",
    "curtask",
    "elapsed",
    "func",
    "gid",
    "nsecs",
    "pid",
    "probe",
    "rand",
    "retval",
    "sarg[0-9]",
    "tid",
    "uid",
    "username",
)
CALLS = (
    "avg",
    "buf",
    "cat",
    "cgroupid",
    "clear",
    "count",
    "delete",
    "exit",
    "hist",
    "join",
    "kaddr",
    "kptr",
    "ksym",
    "lhist",
    "macaddr",
    "max",
    "min",
    "ntop",
    "override",
    "print",
    "printf",
    "cgroup_path",
    "reg",
    "signal",
    "sizeof",
    "stats",
    "str",
    "strerror",
    "strftime",
    "strncmp",
    "strcontains",
    "sum",
    "system",
    "time",
    "uaddr",
    "uptr",
    "usym",
    "zero",
    "path",
    "unwatch",
    "bswap",
    "skboutput",
    "pton",
    "debugf",
)
CALL_BUILTINS = ("kstack", "ustack")
KEYWORDS = ("if", "else", "unroll", "while", "for", "return", "continue", "break")
# lexer.l's operator rules, one literal each (flex picks the longest: "<<=" over "<<" over "<").
OPERATORS = (
    ":",
    ";",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ",",
    "=",
    "<<=",
    ">>=",
    "+=",
    "-=",
    "*=",
    "/=",
    "%=",
    "&=",
    "|=",
    "^=",
    "==",
    "!=",
    "<=",
    ">=",
    "<<",
    ">>",
    "<",
    ">",
    "&&",
    "||",
    "+",
    "-",
    "++",
    "--",
    "*",
    "/",
    "%",
    "&",
    "|",
    "^",
    "!",
    "~",
    ".",
    "->",
    "?",
)

_INT = r"[0-9](?:[0-9_]*[0-9])?(?:[uU]?[lL]?[lL]|[uU])?"  # lexer.l {int}, with {int_size}
_IDENT = r"[_a-zA-Z][_a-zA-Z0-9]*"  # lexer.l {ident}


def _words(words: Tuple[str, ...]) -> str:
    """An alternation that, like flex, matches the longest of `words` (regex alternation takes the first)."""
    return "(?:%s)" % "|".join(sorted(words, key=lambda w: -len(w.replace("[0-9]", "0"))))


class _Rule(NamedTuple):
    kind: str
    pattern: Pattern[str]
    first: str  # the characters a match can start with (to pick candidate rules fast)
    trail: int  # 1: the last char is trailing context (flex `$` or `r/s`), counted but not consumed


def _rule(kind: str, pattern: str, first: str, trail: int = 0) -> _Rule:
    return _Rule(kind, re.compile(pattern, re.M), first, trail)


_LOWER, _UPPER, _DIGITS = "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789"
_IDSTART = _LOWER + _UPPER + "_"

# The INITIAL state's rules, in lexer.l's order (the order breaks ties of equal length).
_RULES: List[_Rule] = (
    [
        _rule("SPACE", r"[ \t]+", " \t"),  # {hspace}+
        _rule("SPACE", r"[\n\r]+", "\n\r"),  # {vspace}+
        _rule("SHEBANG", r"^#![^\n]*\n", "#", trail=1),  # ^"#!".*$
        _rule("COMMENT", r"//[^\n]*\n", "/", trail=1),  # "//".*$  ($ needs a newline)
        _rule("COMMENT_OPEN", r"/\*", "/"),  # "/*" -> COMMENT state
        _rule("STACK_MODE", r"(?:bpftrace|perf)", "bp"),  # bpftrace|perf
        _rule("BUILTIN", _words(BUILTINS), _LOWER),  # {builtin}
        _rule("CALL", _words(CALLS), _LOWER),  # {call}
        _rule("CALL_BUILTIN", _words(CALL_BUILTINS), "ku"),  # {call_and_builtin}
        _rule("NUMBER", r"0[xX][0-9a-fA-F]+|" + _INT, _DIGITS),  # {int}|{hex}|{exponent}: see _number
        _rule("PATH", r":(?:\\.|[_\-./a-zA-Z0-9#*])+", ":"),  # {path}
        _rule("MAP", r"@(?:%s)?" % _IDENT, "@"),  # {map}
        _rule("VAR", r"\$" + _IDENT, "$"),  # {var}
        _rule("ENDPRED", r"/[ \t\n\r]*[/{]", "/", trail=-1),  # \//{space}*[\/\{]
    ]
    + [_rule("PUNCT", re.escape(op), op[0]) for op in OPERATORS if op != "?"]
    + [
        _rule("PARAM", r"\$[0-9]+", "$"),  # "$"[0-9]+
        _rule("PARAMCOUNT", r"\$#", "$"),  # "$"#
        _rule("CPREPROC", r"#[^!][^\n]*", "#"),  # "#"[^!].*  ([^!] takes a newline too)
        _rule("KEYWORD", _words(KEYWORDS), "iefurcb"),  # "if", "else", ... "break"
        _rule("PUNCT", r"\?", "?"),  # "?"
        _rule("STRING_OPEN", r'"', '"'),  # \" -> STR state
        _rule("STRUCT_OPEN", r"(?:struct|union|enum)", "sue"),  # struct|union|enum -> STRUCT state
        _rule("IDENT", _IDENT, _IDSTART),  # {ident}
        _rule("ERROR", r".", ""),  # . -> "invalid character"
    ]
)
_BY_FIRST: Dict[str, List[_Rule]] = {}


def _candidates(char: str) -> List[_Rule]:
    """The rules that can match at a character, in lexer.l's order (cached per character)."""
    rules = _BY_FIRST.get(char)
    if rules is None:
        rules = [rule for rule in _RULES if char in rule.first or not rule.first]
        _BY_FIRST[char] = rules
    return rules


def tokenize(program: str) -> List[Token]:
    """All tokens of `program` as bpftrace 0.17 lexes it (whitespace dropped), errors included."""
    tokens: List[Token] = []
    pos, end = 0, len(program)
    while pos < end:
        kind, length = _longest(program, pos)
        state = _STATES.get(kind)
        if state is not None:
            token = state(program, pos, length)
        elif kind == "NUMBER":
            token = _number(program, pos)
        elif kind == "ERROR":
            token = Token("ERROR", pos, pos + 1, program[pos], "invalid character '%s'" % program[pos])
        else:
            token = Token(kind, pos, pos + length, program[pos : pos + length])
        if token.kind != "SPACE":
            tokens.append(token)
        pos = max(token.end, pos + 1)
    return tokens


def _longest(program: str, pos: int) -> Tuple[str, int]:
    """flex's choice at `pos`: (rule kind, consumed length); the longest match, the first rule on a tie."""
    best_kind, best_len, best_consumed = "ERROR", 0, 1
    for rule in _candidates(program[pos]):
        match = rule.pattern.match(program, pos)
        if match is None:
            continue
        length = match.end() - pos
        if rule.kind == "NUMBER":
            length = _number(program, pos).end - pos
        if length > best_len:
            consumed = 1 if rule.trail < 0 else length - rule.trail
            best_kind, best_len, best_consumed = rule.kind, length, consumed
    return best_kind, best_consumed


def _number(program: str, pos: int) -> Token:
    """{int}|{hex}|{exponent}, longest first; exponent as int [eE] int (no regex backtracking over digits)."""
    hexa = _HEX_RE.match(program, pos)
    whole = _INT_RE.match(program, pos)
    end = max(hexa.end() if hexa else pos, whole.end() if whole else pos)
    if whole is not None and whole.end() == end and end < len(program) and program[end] in "eE":
        power = _INT_RE.match(program, end + 1)
        if power is not None:
            end = power.end()
    text = program[pos:end]
    try:
        value = str(int(text.replace("_", "").rstrip("uUlL"), 0))
    except ValueError:
        value = text  # an exponent, octal or malformed number: bpftrace's int_parser decides; keep the text
    return Token("INT", pos, end, value)


_INT_RE = re.compile(_INT)
_HEX_RE = re.compile(r"0[xX][0-9a-fA-F]+")


def _comment(program: str, pos: int, _length: int) -> Token:
    """lexer.l COMMENT state: to the first "*/"; end of file inside is an error."""
    close = program.find("*/", pos + 2)
    if close < 0:
        return Token("COMMENT", pos, len(program), program[pos:], "end of file during comment")
    return Token("COMMENT", pos, close + 2, program[pos : close + 2])


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_OCTAL = re.compile(r"\\([0-7]{1,3})")
_HEX = re.compile(r"\\[xX]([0-9a-fA-F]{1,2})")


def _string(program: str, pos: int, _length: int) -> Token:
    """lexer.l STR state: escapes \\n \\t \\r \\" \\\\ \\ooo \\xhh; a newline or end of file is an error."""
    value: List[str] = []
    error = ""
    i, end = pos + 1, len(program)
    while i < end:
        char = program[i]
        if char == '"':
            return Token("STRING", pos, i + 1, "".join(value), error)
        if char == "\n":
            return Token("STRING", pos, i, "".join(value), "unterminated string")
        if char != "\\":
            value.append(char)
            i += 1
            continue
        step, decoded, problem = _escape(program, i)
        value.append(decoded)
        error = error or problem
        if problem == "invalid character":  # lexer.l `.`: a lone backslash before a newline pops STR
            return Token("STRING", pos, i + 1, "".join(value), problem)
        i += step
    return Token("STRING", pos, end, "".join(value), "unterminated string")


def _escape(program: str, i: int) -> Tuple[int, str, str]:
    """One backslash escape at `i`: (length, decoded text, error or "").

    flex's longest match in STR: \\ooo and \\xhh before the two-char escapes; then \\.
    (an invalid escape, still in the string); a backslash before a newline or the end
    matches `.` alone: "invalid character", which also ends the string.
    """
    octal = _OCTAL.match(program, i)
    if octal is not None:
        number = int(octal.group(1), 8)
        return octal.end() - i, chr(number & 0xFF), "octal escape sequence out of range" if number > 255 else ""
    hexa = _HEX.match(program, i)
    if hexa is not None:
        return hexa.end() - i, chr(int(hexa.group(1), 16)), ""
    following = program[i + 1 : i + 2]
    if following and following in _ESCAPES:
        return 2, _ESCAPES[following], ""
    if following and following != "\n":
        return 2, following, "invalid escape character '\\%s'" % following
    return 1, "", "invalid character"


def _struct(program: str, pos: int, length: int) -> Token:
    """lexer.l STRUCT/BRACE states after struct|union|enum: a cast's type name or a whole definition.

    In STRUCT, "*" or ")" ends a type name (left for the next token); "{" opens BRACE.
    In BRACE, braces nest and the "}" (or "};") that closes the outermost one ends a
    definition, copied as text for clang. A "}" in STRUCT pops the state with no token.
    Nothing inside is a comment or a string: that is clang's business.
    """
    keyword = program[pos : pos + length]
    depth = 0
    i, end = pos + length, len(program)
    while i < end:
        char = program[i]
        if depth == 0 and char in "*)":
            return Token("STRUCT_TYPE", pos, i, keyword + " " + program[pos + length : i].strip(" \t\n\r"))
        if char == "{":
            depth += 1
        elif char == "}":
            close = i + (2 if program.startswith("};", i) else 1)
            if depth == 0:
                return Token("STRUCT_LOST", pos, close, program[pos:close], "'}' ends '%s' with no token" % keyword)
            depth -= 1
            if depth == 0:
                return Token("STRUCT_DEFN", pos, close, program[pos:close])
            i = close
            continue
        i += 1
    return Token("STRUCT_LOST", pos, end, program[pos:end], "end of file inside '%s'" % keyword)


def _space(program: str, pos: int, length: int) -> Token:
    return Token("SPACE", pos, pos + length, "")


def _comment_line(program: str, pos: int, length: int) -> Token:
    return Token("COMMENT", pos, pos + length, program[pos : pos + length])


def _shebang(program: str, pos: int, length: int) -> Token:
    return Token("SHEBANG", pos, pos + length, program[pos : pos + length])


_STATES: Dict[str, Callable[[str, int, int], Token]] = {
    "SPACE": _space,
    "COMMENT": _comment_line,
    "SHEBANG": _shebang,
    "COMMENT_OPEN": _comment,
    "STRING_OPEN": _string,
    "STRUCT_OPEN": _struct,
}


def code(tokens: List[Token]) -> List[Token]:
    """The tokens bpftrace's parser sees: without comments and the shebang line."""
    return [t for t in tokens if t.kind not in ("COMMENT", "SHEBANG")]


def position(program: str, offset: int) -> Tuple[int, int]:
    """1-based line and column of `offset`, as bpftrace counts them."""
    line = program.count("\n", 0, offset) + 1
    return line, offset - (program.rfind("\n", 0, offset) + 1) + 1
