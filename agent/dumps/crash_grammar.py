"""Which crash command lines the agent sends to crash: an allow-list, parsed the way crash parses.

Layer 1 of the dump tools' security boundary (DESIGN.md).  crash runs as root
and reads its line through readline (vi mode) on a pty; what reaches a shell or
a file is decided by crash 8.0.2's own parser, so this module follows it rule
by rule (cmdline.c, tools.c:parse_line, getopt in each cmd_*) and refuses
everything it does not fully understand:

1. characters: printable ASCII only (readline edits the line on control
   characters, after any check); no `!`, `<`, `>` anywhere, even quoted
   (crash pipes an unquoted `!` to /bin/sh, `>` writes files, `<` reads them);
2. pipes: the line is cut at its FIRST `|`; crash only ever receives what is
   before it, the rest goes to the agent's own filters (pipes.py);
3. tokens: crash's parse_line rules, on the subset accepted here: words split
   at spaces, a complete "..." string where a string is expected, a balanced
   (...) group; every other quote, backtick or backslash is refused;
4. commands: read-only ones, with their allowed options (GNU getopt, as crash
   calls it: options may come anywhere) and typed arguments; crash's built-in
   aliases expand to the command they name and are checked as it.

Every refusal is AgentError("refused", ..., rule="crash.<id>"); check() returns
the line to send, which is exactly the line that was checked.
"""

from __future__ import annotations

import re
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from .. import protocol
from ..errors import AgentError

MAX_LINE = 1024  # crash stops at 1500 bytes (cmdline.c:process_command_line, BUFSIZE); aliases lengthen lines
MAX_PIPED = 4096  # the whole line, filters included
MAX_TOKENS = 64  # crash's MAXARGS is 100 (defs.h: "too many arguments in string!")


class CrashLine(NamedTuple):
    """A checked line: `text` goes to crash as is, `argv` is how crash's parse_line splits it."""

    text: str
    argv: Tuple[str, ...]


class Token(NamedTuple):
    text: str  # what crash's parse_line hands the command (a string's quotes removed)
    quoted: bool  # it was a complete "..." string


def refuse(rule: str, message: str, hint: str) -> AgentError:
    return AgentError(protocol.REFUSED, message, hint=hint, rule="crash." + rule)


# -- 1. characters


def char_name(ch: str) -> str:
    code = ord(ch)
    if code < 0x20:
        return "0x%02x (^%s)" % (code, chr(code + 0x40))
    return "0x7f (DEL)" if code == 0x7F else "U+%04X" % code


def check_characters(line: str) -> None:
    """Printable ASCII only, and none of ! < > (cmdline.c:setup_redirect, pseudo_command)."""
    for pos, ch in enumerate(line):
        if not " " <= ch <= "~":
            raise refuse(
                "char",
                "character %s at position %d is refused: crash reads its line through "
                "readline (vi mode), where control characters edit the line after it was checked"
                % (char_name(ch), pos),
                "printable ASCII (0x20-0x7e) only, one command per call, no tabs or newlines",
            )
    if "!" in line:
        raise refuse(
            "shell",
            "! is refused anywhere in the line: crash runs what follows an unquoted ! "
            "as a shell command (/bin/sh, cmdline.c:setup_redirect); !N repeats history",
            "no ! at all, even quoted (grep -v instead of negation)",
        )
    for ch in "<>":
        if ch in line:
            raise refuse(
                "redirect",
                "%s is refused anywhere in the line: crash redirections (> FILE, < FILE) "
                "write and read files as root; output stays in the agent's store" % ch,
                "no < or >, even quoted; instead of ptr->member use struct TYPE.MEMBER ADDRESS",
            )


# -- 2. pipes


def split_pipe(line: str) -> Tuple[str, Optional[str]]:
    """(what crash receives, the agent's filter text or None): cut at the first |, quoted or not."""
    if len(line) > MAX_PIPED:
        raise refuse("length", "the line is %d characters long (at most %d)" % (len(line), MAX_PIPED), "a shorter line")
    check_characters(line)
    command, bar, filters = line.partition("|")
    return command, (filters if bar else None)


# -- 3. tokens (tools.c:parse_line)


def tokenize(text: str) -> List[Token]:
    """crash's parse_line on the lines accepted here: words end at a space; a word that starts
    with " after a space runs to the next " (quotes dropped); a word that starts with ( after a
    space runs to its matching ), spaces included, and on to the next space."""
    tokens: List[Token] = []
    pos = _skip_spaces(text, 0)
    while pos < len(text):
        if len(tokens) == MAX_TOKENS:
            raise refuse("length", "more than %d words in the line" % MAX_TOKENS, "fewer arguments per command")
        if text[pos] == '"':
            token, pos = _string(text, pos, first=not tokens)
        elif text[pos] == "(" and tokens:
            token, pos = _group(text, pos)
        else:
            token, pos = _word(text, pos)
        _check_quotes(token)
        tokens.append(token)
        pos = _skip_spaces(text, pos)
    return tokens


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] == " ":
        pos += 1
    return pos


def _word(text: str, pos: int) -> Tuple[Token, int]:
    end = text.find(" ", pos)
    end = len(text) if end < 0 else end
    return Token(text[pos:end], False), end


def _string(text: str, pos: int, first: bool) -> Tuple[Token, int]:
    """parse_line: a " after a space starts a string that ends at the next " (which becomes a
    space: `"a"b` is two words).  A quoted first word takes another path in parse_line: refused."""
    hint = 'a string only as a whole word, "like this", where a command takes a string (search -c)'
    if first:
        raise refuse("quote", "a quoted command name is refused", "start the line with the command's name")
    end = text.find('"', pos + 1)
    if end < 0:
        raise refuse("quote", 'unterminated " at position %d' % pos, hint)
    if end + 1 < len(text) and text[end + 1] != " ":
        raise refuse(
            "quote",
            'text right after the closing " at position %d: crash would split it off as another word' % end,
            hint,
        )
    if end == pos + 1:
        raise refuse("quote", 'empty string "" at position %d' % pos, hint)
    return Token(text[pos + 1 : end], True), end + 1


def _group(text: str, pos: int) -> Tuple[Token, int]:
    """parse_line: ( after a space opens an expression that runs to its matching ), spaces and
    all, then to the next space; an unmatched ( would run to the end of the line: refused."""
    depth = 0
    for end in range(pos, len(text)):
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        if depth == 0:
            token, after = _word(text, end)
            return Token(text[pos:end] + token.text, False), after
    raise refuse(
        "paren",
        "unbalanced ( at position %d: crash would take the rest of the line as one expression" % pos,
        "balance every ( with a )",
    )


def _check_quotes(token: Token) -> None:
    """Quotes are paired differently by parse_line, setup_redirect and gdb: none inside a word."""
    if token.quoted:
        bad = [ch for ch in "'`\\" if ch in token.text]
        if bad:
            raise refuse(
                "quote",
                "%r inside the string %r is refused" % (bad[0], token.text),
                "strings hold no quotes, backticks or backslashes",
            )
        return
    for ch in '"`':
        if ch in token.text:
            raise refuse(
                "quote",
                "%s inside the word %r is refused: crash and gdb pair quotes differently "
                "than this check could" % (ch, token.text),
                'quotes only around a whole string argument ("like this"), '
                "single quotes only around a whole ps/foreach regex ('b.*sh')",
            )
    if "\\" in token.text[1:]:
        raise refuse(
            "backslash",
            "backslash inside the word %r is refused" % token.text,
            "a backslash only before a ps/foreach command name (\\123)",
        )


# -- argument kinds


class Kind:
    """A type of argument: a name for messages, a full-match pattern, and for kinds that take
    expressions, the check a token starting with ( (or any token, without a pattern) must pass."""

    def __init__(
        self,
        name: str,
        pattern: str = "",
        quoted: bool = False,
        expression: Optional[Callable[[str], None]] = None,
        single_quotes: bool = False,
    ) -> None:
        self.name, self.pattern = name, pattern
        self.rx = re.compile("(?:%s)\\Z" % pattern) if pattern else None
        self.quoted = quoted  # a "..." string may stand here (its content passed _check_quotes)
        self.expression = expression
        self.single_quotes = single_quotes  # only ps/foreach 'regex' words hold single quotes

    def check(self, token: Token, where: str) -> None:
        if token.quoted:
            if not self.quoted:
                raise refuse(
                    "quote",
                    "%s: a quoted string is refused here (%s expected)" % (where, self.name),
                    'quotes only where a command takes a string (search -c "...", ps "name")',
                )
            return
        matches = self.rx is not None and self.rx.match(token.text) is not None
        if "'" in token.text and not (self.single_quotes and matches):
            raise refuse(
                "quote",
                "%s: single quote in %r is refused (gdb and crash's pipe scan pair quotes "
                "differently)" % (where, token.text),
                "single quotes only around a whole ps/foreach regex word, without spaces ('b.*sh')",
            )
        if matches:
            return
        if self.expression is not None and (self.rx is None or token.text.startswith("(")):
            self.expression(token.text)
            return
        raise refuse("argument", "%s: %r is not %s" % (where, token.text, self.name), "%s expected" % self.name)


def either(name: str, *kinds: Kind) -> Kind:
    return Kind(name, "|".join("(?:%s)" % k.pattern for k in kinds))


EXPR_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_ .,&*()[]{}+-/%:~^?@=")


def check_expression(text: str) -> None:
    """A gdb/crash expression that only reads: a small character set, no assignment (= but in ==),
    no ++ or --.  Checked word by word: crash joins p's and whatis' words with single spaces for
    gdb (tools.c:concat_args), so no == or ++ spans two words; rd/dis/eval use crash's own eval.
    Parentheses inside a word are gdb's business (a syntax error at worst); a word that opens a
    group with ( was already balanced by tokenize()."""
    hint = (
        "expressions of symbols, numbers, casts, . [] * & + - / % : ~ ^ ? @ and ==; no assignment, ++, --, quotes or $"
    )
    for ch in text:
        if ch not in EXPR_CHARS:
            raise refuse("expression", "%r in the expression %r is refused" % (ch, text), hint)
    if "=" in re.sub(r"(?<!=)==(?!=)", "", text):
        raise refuse(
            "expression",
            "assignment (=) in the expression %r is refused: it would write kernel memory or gdb state" % text,
            hint,
        )
    for op in ("++", "--"):
        if op in text:
            raise refuse("expression", "%s in the expression %r is refused: it would write memory" % (op, text), hint)


NUM = r"0[xX][0-9a-fA-F]+|[0-9]+"
HEXV = r"(?:0[xX])?[0-9a-fA-F]+"
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
SYM = r"[A-Za-z_][A-Za-z0-9_.]*"  # kernel symbols may hold dots: foo.isra.0, foo.cold
SYMOFF = SYM + r"(?:\+(?:" + NUM + r"))?"
MEMBER = IDENT + r"(?:\[[0-9]+\])*"
MPATH = MEMBER + r"(?:\." + MEMBER + r")*"
MEMBERS = MPATH + r"(?:," + MPATH + r")*"
CPUS_RX = r"a|all|[0-9]+(?:-[0-9]+)?(?:,[0-9]+(?:-[0-9]+)?)*"
NAME_CHARS = r"A-Za-z0-9_.:/@+,%~"

NUMBER = Kind("a number (decimal or 0x-hex)", NUM)
SIGNED = Kind("a number", r"-?(?:%s)" % NUM)
HEX = Kind("a hexadecimal value", HEXV)
TASK = Kind("a pid or a hexadecimal task address", HEXV)
CPUS = Kind("a cpu list (3, 1,8,9-14, a or all)", CPUS_RX)
MEMBER_LIST = Kind("member[,member] (member.member, member[index])", MEMBERS)
STRUCT = Kind("struct_name[.member[,member]]", IDENT + r"(?:\.(?:" + MEMBERS + r"))?")
OFFSET = Kind("an offset (a number or struct.member)", NUM + "|" + IDENT + r"\." + MPATH)
EXPRESSION = Kind("a read-only expression", expression=check_expression)
ADDRESS = Kind("an address (hex, symbol[+offset] or (expression))", HEXV + "|" + SYMOFF, expression=check_expression)
ADDRESS_CPU = Kind("an address or symbol, optionally :cpuspec", r"(?:%s|%s)(?::(?:%s)?)?" % (HEXV, SYMOFF, CPUS_RX))
SYMBOL_OR_ADDR = Kind("a symbol or an address", HEXV + "|" + SYMOFF)
LIST_ITEM = Kind(
    "an offset or an address",
    NUM + "|" + HEXV + "|" + SYMOFF + "|" + IDENT + r"\." + MPATH,
    expression=check_expression,
)
WORD = Kind("a name ([A-Za-z0-9_.:-])", r"[A-Za-z0-9_.:][A-Za-z0-9_.:-]*")
WORDS = Kind("name[,name]", r"[A-Za-z0-9_.:][A-Za-z0-9_.:-]*(?:,[A-Za-z0-9_.:-]+)*")
# Matched against dentry names in the dump (filesys.c:cmd_fuser, cmd_files -R, cmd_mount): never opened.
DUMP_PATH = Kind("a path as the dump's kernel names it", r"/[%s-]*" % NAME_CHARS)
FILE_REF = either("a number, address, symbol or a path in the dump", NUMBER, HEX, Kind("", SYMOFF), DUMP_PATH)
MOUNT_ARG = either("an address, device name or mount point", HEX, WORD, DUMP_PATH)
# ps/foreach: pid, task, command name (\name when it looks like a number), or 'regex' (task.c:cmd_ps).
TASK_SELECTOR = Kind(
    "a pid, task address, command name, \\name, \"name\" or 'regex'",
    r"\\?[%s][%s-]*|'[%s*?^$\[\]{}()-]+'" % (NAME_CHARS, NAME_CHARS, NAME_CHARS),
    quoted=True,
    single_quotes=True,
)
STRING_RX = r"[%s=#$*?^&\[\]{}][%s=#$*?^&\[\]{}-]*" % (NAME_CHARS, NAME_CHARS)
SEARCH_VALUE = Kind("a value, symbol, (expression) or string", STRING_RX, quoted=True, expression=check_expression)
POLICY = Kind(
    "scheduling policies (NORMAL,FIFO,RR,BATCH,ISO,IDLE,DEADLINE or numbers)", r"[A-Za-z0-9]+(?:,[A-Za-z0-9]+)*"
)
HELP_TOPIC = Kind("a command name", r"[A-Za-z0-9_*?]+")


def literal(*words: str) -> Kind:
    return Kind(" or ".join(words), "|".join(re.escape(w) for w in words))


# -- 4. commands


class Spec:
    """A command's allowed options (crash's getopt letters; `values` take one) and arguments:
    `args` in order, the last one repeating when `repeat`; `check` replaces the argument check."""

    def __init__(
        self,
        flags: str = "",
        values: Optional[Mapping[str, Kind]] = None,
        args: Sequence[Kind] = (),
        required: int = 0,
        repeat: bool = False,
        refused: Optional[Mapping[str, str]] = None,
        attached: Optional[Mapping[str, Kind]] = None,
        check: Optional[Callable[[Parsed], None]] = None,
        getopt: bool = True,
        hint: str = "",
    ) -> None:
        self.flags, self.hint = flags, hint
        self.values: Mapping[str, Kind] = values or {}
        self.attached: Mapping[str, Kind] = attached or {}  # GNU "x::": a value only when attached (-S=1)
        self.args = tuple(args)
        self.required, self.repeat = required, repeat
        self.refused: Mapping[str, str] = refused or {}
        self.check, self.getopt = check, getopt

    def options_hint(self) -> str:
        if self.hint:
            return self.hint
        parts = ["-" + f for f in self.flags]
        parts += ["-%s %s" % (o, k.name) for o, k in sorted(self.values.items())]
        parts += ["-%s[%s]" % (o, k.name) for o, k in sorted(self.attached.items())]
        return ", ".join(parts) if parts else "no options"


class Parsed(NamedTuple):
    name: str
    options: List[Tuple[str, Optional[Token]]]
    args: List[Token]


def struct_spec() -> Spec:
    """struct, union and * (symbols.c:cmd_datatype_common): NAME[.member[,member]] [ADDRESS[:cpus]] [COUNT]."""
    return Spec(flags="pxdhfurvo", values={"c": SIGNED, "l": OFFSET}, args=(STRUCT, ADDRESS_CPU, NUMBER), required=1)


def _set(parsed: Parsed) -> None:
    """Read-only set forms only (tools.c:cmd_set): `set`, set PID|TASK, -p, -c CPU, -v, set radix [10|16]."""
    hint = "read-only forms: set, set PID, set TASK, set -p, set -c CPU, set -v, set radix 10|16"
    if any(t.quoted for t in parsed.args):
        raise refuse("quote", "set takes no quoted strings", hint)
    words = [t.text for t in parsed.args]
    if words in ([], ["radix"], ["radix", "10"], ["radix", "16"]):
        return
    if len(words) == 1 and re.match(r"(?:%s)\Z" % HEXV, words[0]):  # a pid or a task address
        return
    raise refuse(
        "set",
        "set %s is refused: only read-only forms of set run (it would change how crash "
        "reads the dump or talks to the agent, or write files)" % " ".join(words),
        hint,
    )


FOREACH_KEYWORDS: Dict[str, str] = {  # keyword -> the options foreach passes it (help.c:help_foreach, task.c:foreach)
    "bt": "rtTlegRfFosxd",
    "vm": "pvmRdx",
    "task": "Rdx",
    "files": "cR",
    "net": "sSRdx",
    "set": "",
    "ps": "Gspctlmagry",
    "sig": "g",
    "vtop": "cuk",
}


def _foreach(parsed: Parsed) -> None:
    """task.c:cmd_foreach: selectors, then ONE keyword; after it every word is the keyword's
    argument (only vtop takes any: addresses).  Options belong to the keyword's command."""
    hint = "foreach [pid|task|name|'regex'|state|kernel|user|gleader|active ...] %s [its options]" % "|".join(
        sorted(FOREACH_KEYWORDS)
    )
    keyword, rest = None, []  # type: Tuple[Optional[str], List[Token]]
    for pos, token in enumerate(parsed.args):
        if token.text in FOREACH_KEYWORDS or token.text == "test":
            keyword = token.text
            rest = parsed.args[pos + 1 :]
            break
        TASK_SELECTOR.check(token, "foreach selector")
    if keyword is None or keyword == "test":
        raise refuse(
            "foreach",
            "foreach needs one of its commands (%s)" % ", ".join(sorted(FOREACH_KEYWORDS))
            if keyword is None
            else "foreach test is refused (a crash debug command)",
            hint,
        )
    allowed = FOREACH_KEYWORDS[keyword]
    for option, _value in parsed.options:
        if option not in allowed:
            raise refuse(
                "foreach",
                "foreach %s does not take -%s (it takes %s)"
                % (keyword, option, " ".join("-" + o for o in allowed) or "no options"),
                hint,
            )
    if rest and keyword != "vtop":
        raise refuse("foreach", "foreach %s takes no arguments after it, got %r" % (keyword, rest[0].text), hint)
    for token in rest:
        HEX.check(token, "foreach vtop address")


def _eval(parsed: Parsed) -> None:
    """tools.c:cmd_eval takes no getopt: -b, -l, -lb or -bl first, then the expression."""
    words = list(parsed.args)
    while words and words[0].text in ("-b", "-l", "-lb", "-bl"):
        words.pop(0)
    if not words:
        raise refuse("arguments", "eval needs an expression or a value", "eval [-b] [-l] (expression) | value")
    for token in words:
        EXPRESSION.check(token, "eval")


COMMANDS: Dict[str, Spec] = {
    "*": struct_spec(),
    "ascii": Spec(args=(HEX,), repeat=True, getopt=False),  # no getopt: tools.c:cmd_ascii
    "bpf": Spec(flags="PMtTjsxd", values={"m": NUMBER, "p": NUMBER}),
    "bt": Spec(
        flags="fFaloreEgstTdxvp",
        values={"c": CPUS, "n": literal("idle"), "I": ADDRESS, "S": HEX, "R": SYMBOL_OR_ADDR},
        refused={
            "D": "it changes the session's unwinder settings",
            "O": "it changes the session's default unwinder",
            "A": "it is for S390 only",
        },
        args=(TASK,),
        repeat=True,
    ),
    "btop": Spec(args=(HEX,), repeat=True, required=1, getopt=False),
    "dev": Spec(flags="dDpiV", refused={"v": "it copies a device dump to a file on the host"}),
    "dis": Spec(
        flags="rfluxdh",
        args=(ADDRESS, NUMBER),
        required=1,
        refused={
            "s": "it reads source files from the host",
            "b": "it changes a session setting",
            "B": "it changes a session setting",
            "U": "it is undocumented",
        },
    ),
    "eval": Spec(check=_eval, getopt=False),
    "files": Spec(flags="c", values={"d": HEX, "p": HEX, "R": FILE_REF}, args=(TASK,), repeat=True),
    "foreach": Spec(flags="vomlgersStTpukcfFxhdaG", values={"R": FILE_REF, "y": POLICY}, check=_foreach),
    "fuser": Spec(args=(either("a path in the dump or an inode address", DUMP_PATH, HEX),), repeat=True, required=1),
    "help": Spec(args=(HELP_TOPIC,), repeat=True),
    "ipcs": Spec(flags="smMq", values={"n": TASK}, args=(HEX,), repeat=True),
    "irq": Spec(flags="dubas", values={"c": CPUS}, args=(NUMBER,), repeat=True),
    "kmem": Spec(
        flags="fFcCivVnzohpsrgP",
        values={"m": MEMBER_LIST, "I": WORDS},
        attached={"S": Kind("=cpus", r"=(?:%s)" % CPUS_RX)},
        args=(WORD,),
        repeat=True,
    ),
    "list": Spec(
        flags="BHhrxd",
        values={"s": STRUCT, "S": STRUCT, "e": ADDRESS, "o": OFFSET, "O": OFFSET, "l": OFFSET},
        args=(LIST_ITEM, LIST_ITEM),
        required=1,
    ),
    "log": Spec(flags="Ttdmas"),
    "mach": Spec(flags="cmxd"),
    "mod": Spec(
        flags="t",
        refused={o: "it loads, deletes or reloads module symbols (from files on the host)" for o in "sSdDrRog"},
    ),
    "mount": Spec(flags="if", values={"n": TASK}, args=(MOUNT_ARG,), repeat=True),
    "net": Spec(flags="asSxdn", values={"N": NUMBER, "R": NUMBER}, args=(TASK,), repeat=True),
    "p": Spec(flags="dhxu", args=(EXPRESSION,), repeat=True, required=1),
    "ps": Spec(flags="ASgstcpkuGlmar", values={"C": CPUS, "y": POLICY}, args=(TASK_SELECTOR,), repeat=True),
    "pte": Spec(args=(HEX,), repeat=True, required=1),
    "ptob": Spec(args=(NUMBER,), repeat=True, required=1, getopt=False),
    "ptov": Spec(
        args=(Kind("an address or offset:cpuspec", r"%s(?::(?:%s)?)?" % (HEXV, CPUS_RX)),), repeat=True, required=1
    ),
    "rd": Spec(
        flags="RaxmpfudDsSN8",
        values={"e": HEX, "o": NUMBER, "1": literal("6"), "3": literal("2"), "6": literal("4")},
        refused={"r": "it writes memory to a file on the host"},
        args=(ADDRESS, NUMBER),
        required=1,
        hint="-a -d -D -f -m -N -p -R -s -S -u -x, -8 -16 -32 -64, -o OFFSET, -e END (no -r)",
    ),
    "runq": Spec(flags="tTmg", values={"c": CPUS}),
    "search": Spec(
        flags="TtukKVphwc",
        values={"s": ADDRESS, "e": ADDRESS, "l": NUMBER, "m": HEX, "x": NUMBER},
        args=(SEARCH_VALUE,),
        repeat=True,
        required=1,
    ),
    "set": Spec(
        flags="pv",
        values={"c": NUMBER},
        check=_set,
        refused={"a": "it changes which task the session takes as active on a cpu"},
    ),
    "sig": Spec(flags="lg", values={"s": HEX}, args=(TASK,), repeat=True),
    "struct": struct_spec(),
    "swap": Spec(),
    "sym": Spec(flags="lMpn", values={"m": WORD, "q": WORD}, args=(SYMBOL_OR_ADDR,), repeat=True),
    "sys": Spec(flags="cti", args=(WORD,), repeat=True, refused={"p": "sys -panic panics a live system"}),
    "task": Spec(flags="xdh", values={"R": MEMBER_LIST}, args=(TASK,), repeat=True),
    "timer": Spec(flags="r", values={"C": CPUS}),
    "tree": Spec(
        flags="xdplN",
        values={
            "t": literal("radix", "xarray", "rbtree", "ra", "rb", "x"),
            "r": OFFSET,
            "o": OFFSET,
            "s": STRUCT,
            "S": STRUCT,
        },
        args=(ADDRESS,),
        required=1,
    ),
    "union": struct_spec(),
    "vm": Spec(flags="pmvxd", values={"f": HEX, "P": HEX, "M": HEX, "R": FILE_REF}, args=(TASK,), repeat=True),
    "vtop": Spec(flags="uk", values={"c": TASK}, args=(HEX,), repeat=True, required=1),
    "waitq": Spec(
        args=(either("a symbol, struct.member or address", HEX, Kind("", SYMOFF)), HEX), required=1, getopt=False
    ),
    "whatis": Spec(
        flags="o",
        values={"m": WORD, "r": Kind("a size or low-high", r"(?:%s)(?:-(?:%s))?" % (NUM, NUM))},
        args=(EXPRESSION,),
        repeat=True,
    ),
}

REFUSED: Dict[str, str] = {
    "wr": "wr writes to memory",
    "extend": "extend loads shared objects into crash",
    "gdb": "gdb passthrough can run shell commands and write files",
    "alias": "aliases could hide refused commands",
    "repeat": "repeat could run refused commands",
    "q": "the session stays open: use session_close",
    "exit": "the session stays open: use session_close",
    "map": "map writes a KVM memory map file",
    "save": "save copies files from a remote daemon",
    "test": "test is crash's debugging command",
    "sbitmapq": "sbitmapq is not on this agent's list",
    "h": "h shows crash's history",
    "r": "r re-runs a command from crash's history (cmdline.c:pseudo_command)",
}
for _shell_word in ("vi", "pwd", "grep", "cat", "more", "less", "echo", "ls"):  # main.c:is_external_command
    REFUSED[_shell_word] = "crash runs %s through /bin/sh (system())" % _shell_word

# cmdline.c:alias_init: crash's built-in aliases, expanded here and checked as what they name.
ALIASES: Dict[str, str] = {
    "man": "help",
    "?": "help",
    "quit": "q",
    "sf": "set scroll off",
    "sn": "set scroll on",
    "hex": "set radix 16",
    "dec": "set radix 10",
    "g": "gdb",
    "px": "p -x",
    "pd": "p -d",
    "for": "foreach",
    "size": "*",
    "dmesg": "log",
    "lsmod": "mod",
}


def check(command: str) -> CrashLine:
    """The crash line to send for `command` (the part before any |), or a refusal saying why."""
    check_characters(command)
    text = _normalize(command)
    tokens = tokenize(text)
    alias = ALIASES.get(tokens[0].text)
    if alias is not None:
        rest = text[len(tokens[0].text) :].lstrip(" ")
        text = alias + (" " + rest if rest else "")
        tokens = tokenize(text)
    if len(text) > MAX_LINE:
        raise refuse(
            "length", "the command is %d characters long (at most %d)" % (len(text), MAX_LINE), "a shorter command"
        )
    name = tokens[0].text
    note = " (%s is crash's alias for %r)" % (command.split()[0], alias) if alias is not None else ""
    spec = _spec(name, note)
    parsed = _getopt(name, spec, tokens[1:]) if spec.getopt else Parsed(name, [], tokens[1:])  # eval, ascii...
    if spec.check is not None:
        spec.check(parsed)
    else:
        _check_args(spec, parsed)
    return CrashLine(text, tuple(t.text for t in tokens))


def _normalize(command: str) -> str:
    """cmdline.c: clean_line strips spaces; check_special_handling makes `*foo` into `* foo`."""
    text = command.strip(" ")
    if not text:
        raise refuse("empty", "empty crash command", "a crash command, e.g. bt, log, sys, ps")
    if len(text) > MAX_LINE:
        raise refuse(
            "length", "the command is %d characters long (at most %d)" % (len(text), MAX_LINE), "a shorter command"
        )
    if text[0] == "*" and len(text) > 1 and text[1] != " ":
        text = "* " + text[1:]
    return text


def _spec(name: str, note: str) -> Spec:
    if name in REFUSED:
        raise refuse("command", "%s is refused: %s%s" % (name, REFUSED[name], note), _commands_hint())
    spec = COMMANDS.get(name)
    if spec is None:
        raise refuse(
            "command",
            "%r is not a crash command this agent runs (crash would try it as a data type, "
            "then pass it to gdb)%s" % (name, note),
            _commands_hint(),
        )
    return spec


def _commands_hint() -> str:
    return "read-only crash commands: %s; aliases: %s" % (
        " ".join(sorted(COMMANDS)),
        " ".join(a for a, target in sorted(ALIASES.items()) if _alias_runs(target)),
    )


def _alias_runs(target: str) -> bool:
    words = target.split()
    return words[0] in COMMANDS and (words[0] != "set" or words[1] == "radix")


def _getopt(name: str, spec: Spec, tokens: List[Token]) -> Parsed:
    """glibc getopt as crash calls it (optind = 0, no '+'): options anywhere (permuted) until `--`;
    `-xyz` is -x -y -z; a value is the rest of the word or the next word, whatever it is."""
    options: List[Tuple[str, Optional[Token]]] = []
    args: List[Token] = []
    pos = 0
    while pos < len(tokens):
        word = tokens[pos].text
        if word == "--":
            args.extend(tokens[pos + 1 :])
            break
        if not word.startswith("-") or word == "-":
            args.append(tokens[pos])
            pos += 1
            continue
        pos = _cluster(name, spec, tokens, pos, options)
    return Parsed(name, options, args)


def _cluster(name: str, spec: Spec, tokens: List[Token], pos: int, options: List[Tuple[str, Optional[Token]]]) -> int:
    """One -xyz word (and the value word after it, if its last option takes one): the next position."""
    word = tokens[pos].text
    for at in range(1, len(word)):
        letter, rest = word[at], word[at + 1 :]
        _allowed_option(name, spec, letter)
        if letter in spec.attached:
            value = Token(rest, False) if rest else None
            if value is not None:
                spec.attached[letter].check(value, "%s -%s" % (name, letter))
            options.append((letter, value))
            return pos + 1
        if letter in spec.values:
            if rest:
                value = Token(rest, False)
            elif pos + 1 < len(tokens):
                pos, value = pos + 1, tokens[pos + 1]
            else:
                raise refuse(
                    "option-value",
                    "%s -%s needs a value (%s)" % (name, letter, spec.values[letter].name),
                    "%s takes %s" % (name, spec.options_hint()),
                )
            spec.values[letter].check(value, "%s -%s" % (name, letter))
            options.append((letter, value))
            return pos + 1
        options.append((letter, None))
    return pos + 1


def _allowed_option(name: str, spec: Spec, letter: str) -> None:
    if letter in spec.flags or letter in spec.values or letter in spec.attached:
        return
    why = spec.refused.get(letter)
    message = "%s -%s is refused: %s" % (name, letter, why) if why else "%s has no option -%s here" % (name, letter)
    raise refuse("option", message, "%s takes %s" % (name, spec.options_hint()))


def _check_args(spec: Spec, parsed: Parsed) -> None:
    args = parsed.args
    usage = "%s takes %s" % (parsed.name, _args_hint(spec))
    if len(args) < spec.required:
        raise refuse("arguments", "%s needs %s" % (parsed.name, spec.args[0].name), usage)
    if len(args) > len(spec.args) and not spec.repeat:
        raise refuse(
            "arguments",
            "%s takes at most %d argument%s, got %d"
            % (parsed.name, len(spec.args), "" if len(spec.args) == 1 else "s", len(args)),
            usage,
        )
    for pos, token in enumerate(args):
        spec.args[min(pos, len(spec.args) - 1)].check(token, "%s argument %d" % (parsed.name, pos + 1))


def _args_hint(spec: Spec) -> str:
    kinds = [k.name for k in spec.args]
    if spec.repeat and kinds:
        kinds[-1] += " ..."
    return "options %s; arguments: %s" % (spec.options_hint(), ", then ".join(kinds) if kinds else "none")
