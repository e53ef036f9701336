"""Layer 1 for bpftrace against the real bpftrace: its own AST agrees with the tokens, and a real
agent (the zipapp, on pipes) refuses every attack by its rule without a secret ever coming back.

Each attack is first shown to work on bpftrace alone (the control), so that the agent's
refusal is what keeps the secret, not an attack that never worked.
"""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crashfleet.agent import bpftrace_ast, bpftrace_safety
from crashfleet.agent.bpftrace import pinned_env
from crashfleet.agent.facts import tracefs_mount
from crashfleet.agent.policy import DEFAULTS
from crashfleet.controller.bundle import write_bundle
from tests.dumps.agentproc import Agent
from tests.unit.test_bpftrace_grammar import ATTACKS, BUNDLED, DISTRO, ONE_LINERS

ENV = dict(pinned_env(DEFAULTS), PATH="/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL="C.UTF-8", HOME="/nonexistent")


@pytest.fixture(scope="module", autouse=True)
def tracefs() -> None:
    if shutil.which("bpftrace") is None:
        pytest.fail("bpftrace is not installed (./dev test installs it)")
    if tracefs_mount() is None:
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=True)


@functools.cache
def dump(program: str, *args: str) -> tuple[str, str]:
    """bpftrace -d (dry run: the AST, then the BPF code; nothing attaches): stdout, stderr."""
    proc = subprocess.run(
        ["bpftrace", "-d", "-e", bpftrace_safety.as_run(program), "--", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
    )
    return proc.stdout, proc.stderr


def run(program: str) -> str:
    """bpftrace itself, no agent and none of its limits: everything it prints."""
    proc = subprocess.run(
        ["bpftrace", "-e", program],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": ENV["PATH"], "LC_ALL": "C.UTF-8"},
    )
    return proc.stdout + proc.stderr


# -- the tokens agree with bpftrace's AST

CORPUS = [pytest.param(p.read_text(), id=str(p)) for p in BUNDLED + DISTRO] + ONE_LINERS


@pytest.mark.parametrize("program", CORPUS)
def test_tokens_and_ast_agree_on_the_corpus(program: str) -> None:
    out, err = dump(program, "0")
    ast = bpftrace_ast.read_dump(out)
    if ast is None:  # clang failed here: e.g. <linux/sched.h> beside BTF on this kernel
        assert "ERROR" in err and ("definitions.h" in err or ".h:" in err), err[-2000:]
        return
    tokens = bpftrace_safety.summary(program)
    assert (tokens.calls, tokens.builtins, tokens.probe_types) == (ast.calls, ast.builtins, ast.probe_types)
    assert bpftrace_ast.problems(program, out) == [] or "cat" in ast.calls  # distro oomkill.bt


def test_the_corpus_mostly_reaches_an_ast() -> None:
    """The comparison above is not vacuous: bpftrace parses nearly every program of the corpus."""
    programs = [p.read_text() for p in BUNDLED + DISTRO] + ONE_LINERS
    parsed = sum(bpftrace_ast.read_dump(dump(p, "0")[0]) is not None for p in programs)
    assert parsed >= len(programs) - 4, parsed


@pytest.fixture(scope="module")
def harmless_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("harmless") / "empty.h"
    path.write_text("")
    return str(path)


@pytest.mark.parametrize("program, rule, construct", ATTACKS)
def test_tokens_and_ast_agree_on_attacks_bpftrace_accepts(
    program: str, rule: str, construct: str, harmless_file: str
) -> None:
    program = program.replace("/etc/shadow", harmless_file).replace("\x00", "")
    ast = bpftrace_ast.read_dump(dump(program)[0])
    if ast is not None:
        tokens = bpftrace_safety.summary(program)
        assert (tokens.calls, tokens.builtins, tokens.probe_types) == (ast.calls, ast.builtins, ast.probe_types)


def test_bpftrace_accepts_the_attacks_that_matter(harmless_file: str) -> None:
    """The attacks whose AST we compare above do parse (otherwise that comparison proves nothing)."""
    wanted = [
        "struct x { char c['\"']; }",
        "/* a comment\n",
        'printf("/*")',
        'printf("\\"\\\\")',
        "signal/* hidden */",
        "watchpoint:",
        "uprobe:/etc/shadow:foo",
        "uprobe:$1",
    ]
    for needle in wanted:
        program = next(p for p, _r, _c in ATTACKS if needle in p)
        out, err = dump(program.replace("/etc/shadow", harmless_file), "/bin/bash")
        assert bpftrace_ast.read_dump(out) is not None, (program, err[-1000:])


def test_header_macros_reach_bpftrace_after_the_tokens(harmless_file: str) -> None:
    """Why the AST is checked too: a header's macro becomes a call only in bpftrace's second parse."""
    program = "#include <linux/can/gw.h>\nBEGIN { @x = CGW_MODATTR_LEN; exit(); }"
    bpftrace_safety.check_program(program)
    out, err = dump(program)
    ast = bpftrace_ast.read_dump(out)
    assert ast is not None, err[-1000:]
    assert "sizeof" in ast.calls and "sizeof" not in bpftrace_safety.summary(program).calls
    bpftrace_ast.check_dump(program, out)  # sizeof() is harmless: passes
    strict = bpftrace_safety.KNOWN_CALLS - {"sizeof"}
    with pytest.MonkeyPatch.context() as patch:  # were it a refused call, the AST check would say so
        patch.setattr(bpftrace_safety, "KNOWN_CALLS", strict)
        [finding] = bpftrace_ast.problems(program, out)
    assert (finding.rule, finding.construct) == ("unknown_call", "sizeof")


# -- a real agent refuses the attacks; the secret never comes back


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A root-only file whose content is an identifier (clang's errors echo identifiers)."""
    path = tmp_path_factory.mktemp("secret") / "secret.h"
    content = "CFSECRET_" + uuid.uuid4().hex
    path.write_text(content + "\n")
    path.chmod(0o600)
    yield path, content
    path.unlink()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    base = tmp_path_factory.mktemp("agent")
    write_bundle(base / "agent.pyz")
    policy = base / "policy.json"
    policy.write_text("{}")
    policy.chmod(0o644)
    agent = Agent(base / "agent.pyz", base / "dir", policy, base / "agent.log")
    yield agent
    agent.stop()


LEAKS = [  # attack, its rule, and how bpftrace alone leaks the secret ("dump": -d, "run": a real run)
    ('#include "{secret}"\nBEGIN {{ exit(); }}', "bpftrace.include", "dump"),
    ('# \r#include "{secret}"\nBEGIN {{ exit(); }}', "bpftrace.control_char", "dump"),
    ('struct x {{ char c[\'"\']; }};\nBEGIN {{ cat("{secret}"); exit(); }}', "bpftrace.c_definition", "run"),
    ('BEGIN {{ cat /* x */ ("{secret}"); exit(); }}', "bpftrace.call", "run"),
]
REFUSED = [  # attacks that do not leak on this bpftrace or kernel, refused all the same
    ('#\\\ninclude "{secret}"\nBEGIN {{ exit(); }}', "bpftrace.preprocessor"),
    ('%:include "{secret}"\nBEGIN {{ exit(); }}', "bpftrace.digraph"),
    ('??=include "{secret}"\nBEGIN {{ exit(); }}', "bpftrace.trigraph"),
    ("#include <../../..{secret}>\nBEGIN {{ exit(); }}", "bpftrace.include"),
    ('BEGIN {{ system("cat {secret}"); exit(); }}', "bpftrace.call"),
    ('tracepoint:net:net_dev_queue {{ $r = skboutput("{canary}", args->skbaddr, 64, 0); }}', "bpftrace.call"),
    ("uprobe:{secret}:foo {{ }}", "bpftrace.probe_target"),
    ('uprobe:"{secret}":foo {{ }}', "bpftrace.probe_target"),
    ('import "{secret}";\nBEGIN {{ exit(); }}', "bpftrace.newer_syntax"),
    ("watchpoint:0x10000000:8:w {{ @ = count(); }}", "bpftrace.probe_type"),
]


def refusal(agent: Agent, program: str) -> dict[str, Any]:
    message = agent.call("bpftrace.run", program=program, duration=1)
    assert "error" in message, message
    assert message["error"]["data"]["kind"] == "unsafe_program", message
    return message


@pytest.mark.parametrize("template, rule, how", LEAKS)
def test_attacks_that_leak_on_bpftrace_alone_are_refused(
    agent: Agent, secret: tuple[Path, str], template: str, rule: str, how: str
) -> None:
    path, content = secret
    program = template.format(secret=path)
    leaked = "\n".join(dump(program)) if how == "dump" else run(program)
    assert content in leaked, "control: this attack no longer leaks on bpftrace alone"
    message = refusal(agent, program)
    assert message["error"]["data"]["rule"] == rule and content not in json.dumps(message)


@pytest.mark.parametrize("template, rule", REFUSED)
def test_other_attacks_are_refused_and_create_nothing(
    agent: Agent, secret: tuple[Path, str], tmp_path: Path, template: str, rule: str
) -> None:
    path, content = secret
    canary = tmp_path / "canary.pcap"
    message = refusal(agent, template.format(secret=path, canary=canary))
    assert message["error"]["data"]["rule"] == rule, message
    assert content not in json.dumps(message) and not canary.exists()


def test_a_safe_program_runs_and_nothing_kept_holds_the_secret(agent: Agent, secret: tuple[Path, str]) -> None:
    path, content = secret
    done = agent.result("bpftrace.run", program='BEGIN { printf("layer1 ok\\n"); exit(); }', duration=5, wait=60)
    assert done["state"] == "done" and "layer1 ok" in done["page"]["text"], done
    kept = [p for p in Path(agent.log.name).parent.rglob("*") if p.is_file() and p != path]
    assert kept and not [p for p in kept if content.encode() in p.read_bytes()]


def test_a_program_with_an_allowed_header_passes_both_checks_and_runs(agent: Agent) -> None:
    assert os.path.exists("/usr/include/linux/if_ether.h")
    done = agent.result(
        "bpftrace.run",
        program="#include <linux/if_ether.h>\nBEGIN { @x = sum(ETH_P_IP); exit(); }",
        duration=5,
        wait=60,
    )
    assert done["state"] == "done" and done["maps"]["@x"]["value"] == 0x0800, done


# -- random programs: where bpftrace parses one, the tokens say what its AST says

JUNK = [
    '"',
    "\\",
    '\\"',
    "\\\\",
    "'",
    "*/",
    "/*",
    "//",
    "#",
    "\n",
    "{",
    "}",
    "(",
    ")",
    "cat(",
    "system(",
    "x",
    " ",
    ";",
    "struct y {",
    "??=",
    "%:",
    "\\n",
    "\\x41",
    "\\101",
    ":",
    "$1",
]
PROBES = [
    "BEGIN",
    "END",
    "tracepoint:sched:sched_switch",
    "i:s:1",
    "kprobe:vfs_read",
    "t:raw_syscalls:sys_enter",
    "profile:hz:99",
    "uprobe:/bin/bash:readline",
    "w:0x1:8:w",
    "software:cpu-clock:100",
]


class Programs:
    """Programs with C-looking junk in their strings, comments and attach points (seeded: reproducible)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def junk(self) -> str:
        return "".join(self.rng.choice(JUNK) for _ in range(self.rng.randint(0, 6)))

    def string(self) -> str:
        return '"%s"' % self.junk().replace("\n", "")

    def layout(self) -> str:
        comment = self.rng.choice(["/*%s*/" % self.junk().replace("*/", ""), "//%s\n" % self.junk().replace("\n", "")])
        return self.rng.choice(["", " ", "\n", comment, " %s " % comment])

    def statement(self) -> str:
        return self.rng.choice(
            [
                "printf(%s)" % self.string(),
                "@x = count()",
                "exit()",
                "$t = (struct task_struct *)curtask",
                "@m[comm] = hist(pid)",
                "cat(%s)" % self.string(),
                "system(%s)" % self.string(),
                "if (pid > 1) { @y = sum(tid) }",
                "@s = str(%s)" % self.string(),
                "@k[kstack] = count()",
                "$z = nsecs / 1000",
            ]
        )

    def probe(self) -> str:
        points = ",".join(self.rng.choice(PROBES) for _ in range(self.rng.randint(1, 2)))
        predicate = self.rng.choice(["", " /pid > 0/ ", "/comm == %s/" % self.string()])
        body = (";" + self.layout()).join(self.statement() for _ in range(self.rng.randint(1, 4)))
        return points + self.layout() + predicate + "{" + self.layout() + body + self.layout() + "}"

    def program(self) -> str:
        head = self.rng.choice(["", "#include <linux/in.h>\n", self.layout()])
        return head + "\n".join(self.probe() for _ in range(self.rng.randint(1, 3)))


def test_random_programs_tokens_and_ast_agree() -> None:
    programs = Programs(seed=7)
    parsed = accepted_and_parsed = 0
    for _ in range(150):
        program = programs.program()
        out, _err = dump(program, "1")
        ast = bpftrace_ast.read_dump(out)
        if ast is None:
            continue
        parsed += 1
        tokens = bpftrace_safety.summary(program)
        assert (tokens.calls, tokens.builtins, tokens.probe_types) == (ast.calls, ast.builtins, ast.probe_types), (
            program
        )
        if not bpftrace_safety.problems(program):
            accepted_and_parsed += 1
            assert bpftrace_ast.problems(program, out) == [], program
    assert parsed > 30 and accepted_and_parsed > 10, (parsed, accepted_and_parsed)
