"""Layer 1 for bpftrace: programs are checked on the tokens bpftrace 0.17's lexer makes of them.

The refused programs are written as an attacker would: each hides its construct from
a checker that reads text (blanking comments and strings by C's rules, or regexes),
and each must still be refused, by the rule that names it. Checks against the real
bpftrace (its AST) are in tests/security/test_bpftrace_layer1.py.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from crashfleet.agent import bpftrace_ast, bpftrace_safety, protocol
from crashfleet.agent.bpftrace import Bpftrace
from crashfleet.agent.bpftrace_lexer import tokenize
from crashfleet.agent.bpftrace_safety import check_program, problems, summary
from crashfleet.agent.errors import AgentError
from crashfleet.agent.policy import DEFAULTS, Policy

AGENT_BT = Path(bpftrace_safety.__file__).parent / "bt"
BUNDLED = sorted(AGENT_BT.glob("*.bt"))
DISTRO = sorted(Path(p) for p in glob.glob("/usr/sbin/*.bt"))
SECRET = "/etc/shadow"

ONE_LINERS = [
    "tracepoint:sched:sched_switch { @[comm] = count(); }",
    "t:raw_syscalls:sys_enter /pid == $1/ { @[args->id] = count(); }",
    'BEGIN { printf("hello %s\\n", str($1)); exit(); }',
    "kprobe:vfs_read, kretprobe:vfs_read { @ = count(); }",
    'kprobe:do_nanosleep { printf("PID %d sleeping\\n", pid); }',
    "tracepoint:sched:sched_process_exec { @execs[comm] = count(); } END { clear(@execs); }",
    "profile:hz:99 /pid/ { @[kstack] = count(); }",
    "interval:s:1 { print(@); clear(@); }",
    "tracepoint:block:block_rq_issue { @bytes = hist(args->bytes); }",
    "kprobe:vfs_* { @[func] = count(); }",
    'BEGIN { $t = (struct task_struct *)curtask; printf("%d\\n", $t->real_parent->pid); }',
    'uretprobe:/bin/bash:readline { printf("%s\\n", str(retval)); }',
    "uprobe:libc:malloc { @[ustack(perf, 3)] = count(); }",
    "usdt:/usr/lib/x86_64-linux-gnu/libc.so.6:libc:setjmp { @ = count(); }",
    "#include <linux/sched.h>\nkprobe:finish_task_switch { @ = count(); }",
    "#include <uapi/linux/ptrace.h>\nBEGIN { exit(); }",
    "// it's a comment with an apostrophe, a \\ and ?? in it\nBEGIN { exit(); }",
    '/* a block comment:\n   struct x { }; #include "/etc/shadow" cat("x") */\nBEGIN { exit(); }',
    'BEGIN { printf("\' \\\\ %%: ?? # struct x { } cat(\\"/etc/shadow\\")\\n"); }',
    "tracepoint:signal:signal_generate { @system[comm] = count(); $cat = 1; @signal = args->sig; }",
    "kprobe:do_exit { @[curtask->signal->oom_score_adj] = count(); }",
    "BEGIN { @x = sizeof(struct task_struct); @y = (union foo *)0; }",
    "BEGIN { @ = count(); } // the last line is a comment without a newline",
    "#!/usr/bin/env bpftrace\nBEGIN { exit(); }",
    'iter:task { printf("%s\\n", ctx->task->comm); }',
    "software:page-faults:100 { @[comm] = count(); }",
    'tracepoint:sched:sched_switch /cgroup == cgroupid("/sys/fs/cgroup/system.slice")/ { @ = count(); }',
]


def refused(program: str) -> AgentError:
    with pytest.raises(AgentError) as caught:
        check_program(program)
    assert caught.value.kind == protocol.UNSAFE_PROGRAM, caught.value.message
    return caught.value


# -- the lexer follows lexer.l


def kinds(program: str) -> list[tuple[str, str]]:
    return [(t.kind, t.value) for t in tokenize(program)]


def test_a_struct_definition_is_text_for_clang_quotes_and_all() -> None:
    # lexer.l STRUCT/BRACE: no STR state inside, so '"' there starts no string
    toks = kinds('struct x { char c[\'"\']; };\nBEGIN { cat("/etc/shadow"); }')
    assert toks[0] == ("STRUCT_DEFN", "struct x { char c['\"']; };")
    assert ("CALL", "cat") in toks and ("STRING", "/etc/shadow") in toks


def test_a_cast_is_one_type_name_token() -> None:
    toks = kinds("(struct task_struct *)curtask")
    assert toks[:3] == [("PUNCT", "("), ("STRUCT_TYPE", "struct task_struct"), ("PUNCT", "*")]


def test_line_comments_end_at_the_newline_even_after_a_backslash() -> None:
    # lexer.l "//".*$: no splices; the next line is code
    assert ("CALL", "cat") in kinds('// note \\\ncat("x")\n')
    # ... and without a newline after it, "//" is no comment at all (flex's $ needs one)
    assert ("CALL", "cat") in kinds('BEGIN { } // cat("x")')


def test_hash_starts_a_preprocessor_line_anywhere_and_may_swallow_the_next() -> None:
    # lexer.l "#"[^!].*: [^!] also matches a newline
    assert kinds('BEGIN { } #\ninclude "x"')[-1] == ("CPREPROC", '#\ninclude "x"')
    assert kinds("kprobe:f#x") == [("IDENT", "kprobe"), ("PATH", ":f#x")]  # {path} takes '#'


def test_strings_decode_bpftrace_escapes_and_report_its_errors() -> None:
    [tok] = tokenize(r'"a\"b\\c\x41\101\n"')
    assert tok.value == 'a"b\\cAA\n' and not tok.error
    assert tokenize('"\\q"')[0].error.startswith("invalid escape")
    assert tokenize('"abc\nBEGIN')[0].error == "unterminated string"


def test_longest_match_and_rule_order() -> None:
    assert kinds("structure printfx printf arg10 arg1 cgroup_path 1_000 0x1f") == [
        ("IDENT", "structure"),
        ("IDENT", "printfx"),
        ("CALL", "printf"),
        ("IDENT", "arg10"),
        ("BUILTIN", "arg1"),
        ("CALL", "cgroup_path"),
        ("INT", "1000"),
        ("INT", "31"),
    ]


def test_a_long_number_is_lexed_in_linear_time() -> None:
    assert kinds("1" * 60000 + "x")[-1] == ("IDENT", "x")  # no regex backtracking over digits


# -- what passes


@pytest.mark.parametrize("path", BUNDLED + DISTRO, ids=lambda p: str(p))
def test_vetted_tools_pass(path: Path) -> None:
    program = path.read_text()
    if path.name == "oomkill.bt" and path.parent == Path("/usr/sbin"):
        assert refused(program).extra["rule"] == "bpftrace.call"  # it cat()s /proc/loadavg
    else:
        check_program(program)


def test_every_bundled_and_distro_tool_is_on_the_vetted_list() -> None:
    hashes = bpftrace_safety.vetted_hashes()
    stale = [p.name for p in BUNDLED + DISTRO if hashlib.sha256(p.read_bytes()).hexdigest() not in hashes]
    assert stale == [], "review the tool, then run ./dev vetted"


def test_a_changed_vetted_tool_loses_its_exemption() -> None:
    tool = Path("/usr/sbin/tcpconnect.bt").read_text()
    check_program(tool)
    error = refused(tool + "\n// edited\n")
    assert error.extra["rule"] == "bpftrace.preprocessor" and error.extra["construct"] == "#ifndef"


@pytest.mark.parametrize("program", ONE_LINERS)
def test_typical_programs_pass(program: str) -> None:
    check_program(program)


# -- what is refused, written as an attacker would

ATTACKS = [
    # C character literals: a text blanker reads '"' as the start of a string and skips the cat()
    ('struct x { char c[\'"\']; };\nBEGIN { cat("/etc/shadow"); }', "c_definition", "struct"),
    ('BEGIN { $c = \'"\'; cat("/etc/shadow"); }', "char_literal", "'"),
    # line splices: C joins "#\" and the next line into an #include
    ('#\\\ninclude "/etc/shadow"\nBEGIN { exit(); }', "preprocessor", "#\\"),
    ('// harmless \\\nBEGIN { cat("/etc/shadow"); }', "backslash", "\\"),
    ('#define X \\\n  "/etc/shadow"\nBEGIN { exit(); }', "preprocessor", "#define"),
    # digraphs and trigraphs spell '#'
    ('%:include "/etc/shadow"\nBEGIN { exit(); }', "digraph", "%:"),
    ('??=include "/etc/shadow"\nBEGIN { exit(); }', "trigraph", "??"),
    # a CR is a newline to clang, not to lexer.l: "# \r#include" would be one CPREPROC
    ('# \r#include "/etc/shadow"\nBEGIN { exit(); }', "control_char", "'\\r'"),
    # comments: bpftrace's, not C's
    ('/* a comment\n   over lines */ BEGIN { system("id"); }', "call", "system"),
    ('BEGIN { printf("/*"); cat("/etc/shadow"); printf("*/"); }', "call", "cat"),
    ('BEGIN { exit(); } // cat("/etc/shadow")\n#include "/etc/shadow"', "include", "#include"),
    # strings with quotes and backslashes: the string ends where lexer.l says
    ('BEGIN { printf("\\"\\\\"); cat("/etc/shadow"); }', "call", "cat"),
    ('BEGIN { printf("\\\\\\""); signal("KILL"); }', "call", "signal"),
    # definitions of every kind
    ("struct foo { int a; }\nBEGIN { exit(); }", "c_definition", "struct"),
    ("union u { int a; long b; };\nBEGIN { exit(); }", "c_definition", "union"),
    ("enum e { A, B };\nBEGIN { exit(); }", "c_definition", "enum"),
    ('BEGIN { @x = (struct foo; #include "/etc/shadow"\n *)0; }', "struct_name", "struct"),
    # preprocessor lines
    ('#include "/etc/shadow"\nBEGIN { exit(); }', "include", "#include"),
    ("#include <../../etc/shadow>\nBEGIN { exit(); }", "include", "#include"),
    ("#include <linux/../../../etc/shadow>\nBEGIN { exit(); }", "include", "#include"),
    ("#include </etc/shadow>\nBEGIN { exit(); }", "include", "#include"),
    ("#include <sys/socket.h>\nBEGIN { exit(); }", "include", "#include"),
    ('  #  include "/etc/shadow"\nBEGIN { exit(); }', "include", "#include"),
    ("#include_next <linux/sched.h>\nBEGIN { exit(); }", "preprocessor", "#include_next"),
    ("#import <linux/sched.h>\nBEGIN { exit(); }", "preprocessor", "#import"),
    ("#define cat printf\nBEGIN { exit(); }", "preprocessor", "#define"),
    ("#pragma once\nBEGIN { exit(); }", "preprocessor", "#pragma"),
    ("#if 1\n#endif\nBEGIN { exit(); }", "preprocessor", "#if"),
    ('#embed "/etc/shadow"\nBEGIN { exit(); }', "preprocessor", "#embed"),
    # unsafe calls, however spaced
    ('BEGIN { system ("id"); }', "call", "system"),
    ("BEGIN { signal/* hidden */(9); }", "call", "signal"),
    ('BEGIN { cat\n("/etc/shadow"); }', "call", "cat"),
    ("kprobe:vfs_read { override (-1); }", "call", "override"),
    ('kfunc:tcp_sendmsg { skboutput("/tmp/canary.pcap", args->skb, 1, 0); }', "call", "skboutput"),
    ("BEGIN { unwatch(0x1000); }", "call", "unwatch"),
    ("BEGIN { signal_thread(9); }", "call", "signal_thread"),
    ("BEGIN { write_user(0, 0, 1); }", "call", "write_user"),
    ("BEGIN { __signal(9); }", "call", "__signal"),
    ("BEGIN { $f = cat; }", "call", "cat"),
    ("BEGIN { va_start(1); }", "unknown_call", "va_start"),
    ('BEGIN { @ = cgroupid("/root/.ssh/id_rsa"); }', "call", "cgroupid"),
    ('BEGIN { @ = cgroupid("/sys/fs/cgroup/../../root/x"); }', "call", "cgroupid"),
    # probes
    ("watchpoint:0x10000000:8:w { @ = count(); }", "probe_type", "watchpoint"),
    ("aw:0x1:8:w { }", "probe_type", "aw"),
    ("w*:0x1:8:w { }", "probe_type", "w*"),
    ("BEGIN { }, asyncwatchpoint:0x1:8:rw { }", "probe_type", "asyncwatchpoint"),
    ("uprobe:/etc/shadow:foo { }", "probe_target", "uprobe"),
    ('uprobe:"/etc/shadow":foo { }', "probe_target", "uprobe"),
    ("u:/usr/../etc/shadow:foo { }", "probe_target", "u"),
    ("uretprobe:./shadow:foo { }", "probe_target", "uretprobe"),
    ("usdt:/tmp/x:provider:probe { }", "probe_target", "usdt"),
    ("uprobe:/usr/lib/*/libc.so.6:malloc { }", "probe_target", "uprobe"),
    ("uprobe:$1:readline { }", "probe_param", "$"),
    ("kprobe:$1 { }", "probe_param", "$"),
    ("iter:task:mypin { }", "iter_pin", "iter"),
    # newer bpftrace's syntax
    ('import "/etc/shadow";\nBEGIN { exit(); }', "newer_syntax", "import"),
    ("config = { max_strlen = 9999 }\nBEGIN { exit(); }", "newer_syntax", "config"),
    # what bpftrace's own lexer refuses
    ('BEGIN { printf("x); }', "syntax", '"'),
    ("BEGIN { /* open", "syntax", "/*"),
    ("BEGIN { exit(); } \x00", "control_char", "'\\x00'"),
]


@pytest.mark.parametrize("program, rule, construct", ATTACKS)
def test_attacks_are_refused_by_the_rule_that_names_them(program: str, rule: str, construct: str) -> None:
    error = refused(program)
    assert (error.extra["rule"], error.extra["construct"]) == ("bpftrace." + rule, construct), error.message
    assert (error.hint and "refused" in error.message) or rule == "syntax"
    line, column = error.extra["line"], error.extra["column"]
    assert error.message.startswith("line %d, column %d: " % (line, column))


def test_each_hidden_construct_is_found_not_just_the_first() -> None:
    found = {(f.rule, f.construct) for f in problems('struct x { char c[\'"\']; };\nBEGIN { cat("/etc/shadow"); }')}
    assert {("c_definition", "struct"), ("char_literal", "'"), ("call", "cat")} <= found


def test_text_that_is_not_unicode_is_a_bad_program() -> None:
    with pytest.raises(AgentError) as caught:
        check_program("BEGIN { exit(); } \udc80")
    assert caught.value.kind == protocol.BAD_PROGRAM


def test_positions_are_bpftraces() -> None:
    error = refused('BEGIN {\n\tprintf("x");\n    system("id");\n}')
    assert (error.extra["line"], error.extra["column"]) == (3, 5)


@pytest.fixture
def escape_link() -> Iterator[str]:
    """A symlink under /opt to /etc: a path that looks like a system dir's and is not."""
    link = "/opt/crashfleet-test-%d" % os.getpid()
    os.symlink("/etc", link)
    try:
        yield link
    finally:
        os.unlink(link)


def test_a_probe_target_is_checked_where_it_leads(escape_link: str) -> None:
    error = refused("uprobe:%s/shadow:foo { }" % escape_link)
    assert error.extra["rule"] == "bpftrace.probe_target" and "/etc/shadow" in error.message


# -- what the tokens say, and what bpftrace's AST says


def test_summary_calls_builtins_and_probe_types() -> None:
    got = summary(
        "t:sched:sched_switch /pid/ { @[kstack] = count(); $s = kstack(3); @t = curtask->pid; }\ni:s:1 { exit(); }"
    )
    assert got.calls == {"count", "kstack", "exit"} and got.builtins == {"pid", "kstack", "curtask"}
    assert got.probe_types == {"tracepoint", "interval"}


DUMP = """\nAST after: parser\n-------------------\n#include <linux/x.h>\n\nProgram\n tracepoint:sched:sched_switch
  call: printf :: type[none, ctx: 0]\n   string: \\n  call: cat :: type[none, ctx: 0]\n%s
AST after: Semantic\n-------------------\nProgram\n"""


def test_ast_dump_is_read_by_its_lines() -> None:
    ast = bpftrace_ast.read_dump(DUMP % "")
    assert ast is not None and ast.calls == {"printf"} and ast.probes == ["tracepoint:sched:sched_switch"]
    assert bpftrace_ast.read_dump("stdin:1:1: ERROR: syntax error") is None


@pytest.mark.parametrize(
    "line, rule",
    [
        ("  call: system :: type[none, ctx: 0]", "bpftrace.call"),  # a macro that expands to system(...)
        ("  call: va_start :: type[none, ctx: 0]", "bpftrace.unknown_call"),
        (" watchpoint:0x1:8:w", "bpftrace.probe_type"),
        (" uprobe:/etc/shadow:foo", "bpftrace.probe_target"),
    ],
)
def test_ast_rules_catch_what_macros_bring(line: str, rule: str) -> None:
    with pytest.raises(AgentError) as caught:
        bpftrace_ast.check_dump("BEGIN { exit(); }", DUMP % line)
    assert caught.value.extra["rule"] == rule and caught.value.extra["seen_by"] == "bpftrace -d"
    bpftrace_ast.check_dump("BEGIN { exit(); }", DUMP % "  call: exit :: type[none, ctx: 0]")


def test_blanking_follows_the_lexer() -> None:
    program = 'struct s { char c[\'"\']; };\nBEGIN { printf("x"); } // c\n'
    blanked = bpftrace_safety.blank_comments_and_strings(program)
    assert len(blanked) == len(program) and "char c['\"']" in blanked  # clang's text, not a comment
    assert '"x"' not in blanked and "// c" not in blanked


def test_run_checks_the_ast_only_of_programs_with_a_preprocessor_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bt = Bpftrace(SimpleNamespace(policy=Policy(dict(DEFAULTS), None), base_dir=str(tmp_path)))
    argvs: list[list[str]] = []

    def fake_run(argv: list[str], timeout: float = 60.0) -> tuple[int, str, str]:
        argvs.append(argv)
        return 0, DUMP % "  call: system :: type[none, ctx: 0]", ""

    def no_tracefs() -> dict[str, str]:
        raise RuntimeError("past the checks")

    monkeypatch.setattr(bt, "_binary", lambda: "/usr/bin/bpftrace")
    monkeypatch.setattr(bt, "_run", fake_run)
    monkeypatch.setattr(bt, "_tracefs", no_tracefs)
    with pytest.raises(AgentError) as caught:
        bt.run({"program": "#include <linux/sched.h>\nBEGIN { exit(); }", "args": {"1": "x"}})
    assert caught.value.extra["rule"] == "bpftrace.call" and caught.value.extra["seen_by"] == "bpftrace -d"
    assert argvs == [["/usr/bin/bpftrace", "-d", "-e", "#include <linux/sched.h>\nBEGIN { exit(); }\n", "--", "x"]]
    with pytest.raises(RuntimeError, match="past the checks"):
        bt.run({"program": "BEGIN { exit(); }"})
    assert len(argvs) == 1  # no dump without a header: nothing but constants can come from C
    monkeypatch.setattr(bt, "_run", lambda argv, timeout=60.0: (1, "", "stdin:2:9-12: ERROR: Unknown identifier"))
    with pytest.raises(AgentError) as failed:  # no AST, no run: bpftrace's own error
        bt.run({"program": "#include <linux/sched.h>\nBEGIN { x; }"})
    assert failed.value.kind == protocol.COMPILE_ERROR and failed.value.extra["line"] == 2
