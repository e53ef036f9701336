"""Layer 1 for crash, against the real crash 8.0.2 on the real fixture dump through a real agent.

Layer 1 alone: the agent runs crash without the OS sandbox (policy `sandbox: false`), so only
crash_grammar stands between an attack and its canary; then again as deployed, with the
sandbox (accepted forms must still run there).  Each attack is shown to work on a bare
crash (the control: its canary file appears), then sent to the agent (the zipapp, JSON-RPC on
pipes): it must be refused, naming its rule, leave no canary, and leave the session answering.
Accepted forms are shown to really run, and the grammar's tokenizer is compared with what
crash's own parse_line made of the same words.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from crashfleet.agent import regexbox
from crashfleet.agent.dumps import crash_grammar, pipes
from crashfleet.agent.dumps.crash_session import CrashSession
from crashfleet.agent.policy import DEFAULTS, Policy
from tests.dumps.agentproc import Agent, spawn, sysrq_dumps
from tests.dumps.fixture import Fixture
from tests.security.attack import Canaries

TIMEOUT = 120.0  # seconds for one command: the machine is shared


class Attack(NamedTuple):
    lines: tuple[str, ...]  # the attack, then lines that set it off (run whether refused or not)
    rule: str  # the rule the agent names when it refuses the first line
    real: bool  # the control shows it works on a bare crash 8.0.2


ATTACKS = {
    "bang-mid-line": Attack(("sys !touch {c}",), "crash.shell", True),
    "bang-first": Attack(("!touch {c}",), "crash.shell", True),
    "bar-first": Attack(("| touch {c}",), "crash.empty", True),
    "ctrl-u": Attack(("sys \x15!touch {c}",), "crash.char", True),
    "del": Attack(("sys\x7f\x7f\x7f!touch {c}",), "crash.char", True),
    "ctrl-h": Attack(("sys\x08\x08\x08!touch {c}",), "crash.char", True),
    "esc-I": Attack(("sys #\x1bI!touch {c} ",), "crash.char", True),
    "quote-pairing": Attack(('p "\' | touch {c} #"',), "crash.quote", True),
    "paren-pipe": Attack(("p (1 | 2) | touch {c}",), "crash.paren", True),
    "rd-r": Attack(("rd -r {c} jiffies 8",), "crash.option", True),
    "rd-r-permuted": Attack(("rd jiffies 8 -r {c}",), "crash.option", True),
    "rd-r-clustered": Attack(("rd -xr{c} jiffies 8",), "crash.option", True),
    "rd-r-quoted": Attack(('rd "-r{c}" jiffies 8',), "crash.option", True),
    "set-error": Attack(("set error {c}", "p no_such_symbol_here"), "crash.set", True),
    "external-echo": Attack(("echo $(touch {c})",), "crash.command", True),
    "redirect": Attack(("sys > {c}",), "crash.redirect", True),
    "redirect-append": Attack(("sys -c write >> {c}",), "crash.redirect", True),
    "pipe-to-shell": Attack(("log | touch {c}",), "crash.pipe", True),
    "pipe-unspaced": Attack(("p jiffies|touch {c}",), "crash.pipe", True),
    "newline": Attack(("p 1\n!touch {c}",), "crash.char", False),  # desynchronises a bare session
    "carriage-return": Attack(("sys\r!touch {c}",), "crash.char", False),
    "gdb-shell": Attack(("gdb shell touch {c}",), "crash.command", False),  # crash 8.0.2 forbids it
    "gdb-alias": Attack(("g shell touch {c}",), "crash.command", False),
    "gdb-pipe": Attack(("gdb pipe p 1 | touch {c}",), "crash.command", False),
    "foreach-bang": Attack(("foreach bt !touch {c}",), "crash.shell", False),
    "quoted-bang": Attack(('search -c "x !touch {c}"',), "crash.shell", False),
    "unicode": Attack(("sys \u2028!touch {c}",), "crash.char", False),
}


@pytest.fixture(scope="module")
def bare(dump_fixture: Fixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashSession]:
    """crash 8.0.2 on the fixture, driven as the agent drives it, but with no layer 1 in front."""
    session = dump_fixture.crash_session(tmp_path_factory.mktemp("bare-crash"))
    session.start()
    yield session
    session.close()


def raw(session: CrashSession, line: str) -> str:
    out: list[bytes] = []
    ended = session.run(line, None, out.append, TIMEOUT)
    assert ended["ended"] == "done", (line, ended)
    return b"".join(out).decode("utf-8", "replace")


class Opened(NamedTuple):
    """A session a real agent opened on the fixture dump."""

    agent: Agent
    session_id: str

    def crash(self, command: str) -> dict[str, Any]:
        return self.agent.call("dumps.crash", session_id=self.session_id, command=command, timeout=TIMEOUT)

    def text(self, command: str) -> str:
        message = self.crash(command)
        assert "result" in message, (command, message)
        assert message["result"]["ended"] == "done", message["result"]
        return str(message["result"]["page"]["text"])


@pytest.fixture(scope="module", params=["layer1-alone", "both-layers"])
def session(
    request: pytest.FixtureRequest, zipapp: Path, dump_fixture: Fixture, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Opened]:
    """A session on an agent without the OS sandbox (layer 1 alone), then on one with it (as deployed)."""
    base = tmp_path_factory.mktemp(request.param)
    vmcore = sysrq_dumps(dump_fixture, base / "dumps")
    agent = spawn(zipapp, base, {"sandbox": request.param == "both-layers"}, vmcore.parent)
    try:
        opened = agent.result("dumps.open", vmcore=str(vmcore), timeout=300)
        assert "sysrq triggered crash" in opened["page"]["text"], opened
        yield Opened(agent, opened["session_id"])
    finally:
        assert agent.stop() == 0


@pytest.mark.parametrize("name", [n for n, a in ATTACKS.items() if a.real])
def test_the_attack_works_on_a_bare_crash(name: str, bare: CrashSession, canaries: Canaries) -> None:
    canary = Path(canaries.path(name))
    for line in ATTACKS[name].lines:
        raw(bare, line.format(c=canary))
    raw(bare, "set error default")  # undo set-error; and crash reaps its pipe children before a prompt
    assert canary.exists(), f"{name}: the attack did not work on crash 8.0.2: the agent test proves nothing"
    canary.unlink()  # expected here; `canaries` fails any test that leaves one


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_the_agent_refuses_the_attack(name: str, session: Opened, canaries: Canaries) -> None:
    attack = ATTACKS[name]
    canary = Path(canaries.path(name))
    first, *rest = [line.format(c=canary) for line in attack.lines]
    refused = session.crash(first)
    assert "error" in refused, refused
    data = refused["error"]["data"]
    assert data["kind"] == "refused" and data["rule"] == attack.rule, refused["error"]
    assert data["hint"], refused["error"]
    for line in rest:
        session.crash(line)
    assert not canary.exists(), f"{name}: {canary} was created"
    assert "sysrq triggered crash" in session.text("sys")  # the session still answers


ACCEPTED = [  # (line, a regular expression its output matches)
    ("bt", r"#\d+ \[\w+\] sysrq_handle_crash at"),
    ("bt -c 0", r"sysrq_handle_crash"),
    ("bt -p | grep -c sysrq_handle_crash", r"^1$"),
    ("foreach init bt", r"COMMAND: \"init\"(.|\n)*sysrq_handle_crash"),
    ("foreach bt | grep -c PID:", r"^[1-9]\d*$"),
    ("dmesg | tail -n 1", r"end Kernel panic - not syncing: sysrq triggered crash"),
    ("log -T | grep -c 'sysrq triggered crash'", r"^[1-9]\d*$"),
    ("lsmod", r"qemu_fw_cfg"),
    ("mod -t", r"no tainted modules"),
    ("sys -t", r"TAINTED_MASK: "),
    ("ps init", r"^>? +1 +0 .* init$"),
    ("ps 'ini.*'", r" init$"),
    ("px init_task.pid", r"^\$\d+ = 0x0$"),
    ("p init_task.comm", r"swapper/0"),
    ("p sizeof(struct task_struct)", r"^\$\d+ = 0x[0-9a-f]+$"),
    ("*task_struct.comm init_task", r'comm = "swapper/0'),
    ("struct task_struct.pid,comm init_task", r'pid = 0x0,\n\s+comm = "swapper/0'),
    ("size list_head", r"struct list_head \{"),
    ("whatis jiffies", r"unsigned long jiffies;"),
    ("sym sysrq_handle_crash", r"\(t\) sysrq_handle_crash"),
    ("dis -l sysrq_handle_crash 2", r"<sysrq_handle_crash\+?\w*>:"),
    ("rd -a linux_banner 32", r"Linux version"),
    ("eval (1 + 2)", r"decimal: 3"),
    ("ascii 62696c2f7273752f", r"/usr/lib"),
    ("help bt | head -n 3", r"bt - backtrace"),
    ("man log | head -n 3", r"log - dump system message buffer"),
    ('search -s linux_banner -l 64 -c "Linux version"', r"^\w+: Linux version"),
    ("set", r"PID: 1\n"),
    ("set -p", r"PID: 1\n"),
]


@pytest.mark.parametrize("line,expected", ACCEPTED)
def test_accepted_forms_really_run(line: str, expected: str, session: Opened) -> None:
    out = session.text(line)
    assert re.search(expected, out, re.M), out[:2000]
    assert not re.search(r"^Usage:|invalid option|command not found", out, re.M), out[:2000]


def test_radix_forms_really_switch(session: Opened) -> None:
    try:
        assert "output radix: 10" in session.text("dec")
        assert re.search(r"^\$\d+ = 1$", session.text("p init_task.pid + 1"), re.M)
    finally:
        assert "output radix: 16" in session.text("set radix 16")
    assert re.search(r"^\$\d+ = 0x1$", session.text("p init_task.pid + 1"), re.M)


# Words crash's foreach reports one by one ("unknown argument"): parse_line's tokens, made visible.
TOKEN_LINES = [
    'foreach "a b"   (c d)e zz ((x y) z)w  "q"',
    'foreach a(b c)d "x  y" (1 + (2 3))',
    'foreach  "(p q" r)',
    'foreach x, "  lead"  zz',
    "foreach (a)(b c) d",
    "foreach ((1)) ( 2 )  (3)x",
]


@pytest.mark.parametrize("line", TOKEN_LINES)
def test_the_tokenizer_splits_as_crash_does(line: str, bare: CrashSession) -> None:
    reported = re.findall(r'^foreach: unknown argument: "(.*)"$', raw(bare, line), re.M)
    assert reported == [t.text for t in crash_grammar.tokenize(line.strip())][1:]


def test_lines_are_cut_in_the_sandboxed_grep_child_too() -> None:
    """A real regex greps in regexbox's child; its lines are bounded there as in the agent."""
    filters = pipes.parse("log | grep -E 'x+|^yes$'")[1]
    pattern = regexbox.chain_pattern(filters)
    assert pattern == "x+|^yes$"
    out: list[bytes] = []
    sink = regexbox.IsolatedChain(pipes.Chain(filters), Policy(dict(DEFAULTS), None), pattern).bind(out.append)
    for chunk in (b"x" * 3000, b"x" * 3000 + b"\nno\nyes\n", b"x" * 5):
        sink(chunk)
    sink.close()
    assert b"".join(out).decode().splitlines() == [
        "x" * pipes.LINE_MAX + " [... %d more bytes of this line cut by the agent]" % (6000 - pipes.LINE_MAX),
        "yes",
        "xxxxx",
    ]
