"""What drgn code sends back, and what it can change: the agent reads it bounded, and code cannot
forge the answers of the bundled scripts.

The agent is the one unconfined process: the code's answer pipe is read a line at a time, each
line scanned once and capped, all of a call's output capped, and a worker over a cap is killed.
The bundled scripts run in the worker's process that never ran callers' code, over a channel
that code cannot reach. Both hold without the OS sandbox, so each attack runs on an agent with
its sandbox and on one with the allow-lists alone (policy sandbox: false); each goes through a
real agent, on the fixture dump, as a caller would send it.
"""

from __future__ import annotations

from crashfleet.agent.dumps.drgn_client import IDLE_CAP, LINE_CAP
from crashfleet.agent.dumps.service import SCRIPTS
from tests.rig import procs
from tests.security.attack import wait_until
from tests.security.hostile import BUDGETS, Hostile, MiB, page, rss, value
from tests.security.hostile import hostile as hostile  # the module's agent, once per layer

AGENT_GROWTH = 32 * MiB  # what the agent's RSS may grow by during an attack (it was 630+ MiB before caps)

LONG_LINE = """
import os, sys
fd = int(sys.argv[4])  # the code channel's answer pipe, as any code can find it
chunk = b"x" * (16 << 20)
for _ in range(64):  # 1 GiB, no newline
    os.write(fd, chunk)
"""


def test_a_line_without_end_is_cut_off_at_the_line_cap(hostile: Hostile) -> None:
    """1 GiB without a newline on the answer pipe: the agent stops at LINE_CAP, kills the worker,
    says which cap, keeps its own memory, and the session's next call gets a new worker."""
    assert value(hostile.drgn("1")) == 1
    worker, before = hostile.drgn_pid(), rss(hostile.pid)
    answer = hostile.drgn(LONG_LINE)
    assert answer["ended"] == "killed" and answer["cap"] == "line", answer
    assert str(LINE_CAP) in answer["note"]
    assert rss(hostile.pid) < before + AGENT_GROWTH
    assert worker is not None and wait_until(lambda: not procs.alive(worker), 30)
    assert hostile.answers() and value(hostile.drgn("2 + 2")) == 4


FLOOD = """
for i in range(10 ** 9):
    print("flood line %d " % i + "x" * 100)
"""


def test_a_flood_of_output_ends_at_the_output_cap_with_what_was_kept(hostile: Hostile) -> None:
    """print() without end: the output keeps max_output_bytes, the answer names the cap and shows
    the first lines, the agent's memory does not follow the flood."""
    before = rss(hostile.pid)
    answer = hostile.drgn(FLOOD, timeout=600)
    assert answer["ended"] == "killed" and answer["cap"] == "output", answer
    assert BUDGETS["max_output_bytes"] <= answer["bytes"] < BUDGETS["max_output_bytes"] + MiB
    assert page(answer).startswith("flood line 0 x")
    assert rss(hostile.pid) < before + AGENT_GROWTH
    assert hostile.answers()


SPAM = """
import os, sys, threading
fd = int(sys.argv[4])
forged = b'{"id": "0123456789abcdef", "done": true, "ok": true, "value_head": "forged"}\\n'
def spam():
    while True:
        os.write(fd, forged * 20000)
threading.Thread(target=spam, daemon=True).start()
"started"
"""


def test_code_writing_forged_answers_between_calls_is_stopped(hostile: Hostile) -> None:
    """A thread left behind writes forged answers forever: ids are random, so no call takes one
    for its own; past IDLE_CAP bytes between calls (or its output cap within one) the worker is
    killed, and the next call has a new one."""
    outcomes = [hostile.drgn(SPAM)]
    while outcomes[-1]["ended"] == "done" and len(outcomes) < 5:
        outcomes.append(hostile.drgn("'the real answer'"))
    done, killed = outcomes[:-1], outcomes[-1]
    expected = ["started", *["the real answer"] * 4]  # a call may also be the one its flood ends
    assert [value(a) for a in done] == expected[: len(done)]
    assert killed["ended"] == "killed" and killed["cap"] in ("idle", "output"), killed
    assert str(IDLE_CAP if killed["cap"] == "idle" else 2 * BUDGETS["max_output_bytes"] + IDLE_CAP) in killed["note"]
    assert "forged" not in str(outcomes)
    assert value(hostile.drgn("'a new worker'")) == "a new worker"


HOSTILE = """
import builtins, json, os, sys
import drgn.helpers.linux as linux
import drgn.helpers.linux.pid as pid_helpers
import drgn.helpers.linux.mm as mm_helpers
nothing = lambda *args, **kwargs: iter(())
for module in (linux, pid_helpers):
    module.for_each_task = nothing
linux.task_rss = mm_helpers.task_rss = lambda *args, **kwargs: None
globals()["for_each_task"] = nothing
builtins.sorted = lambda *args, **kwargs: []
reached = []
for fd in range(3, 256):  # every pipe this process holds: forged lines out, requests read
    try:
        os.write(fd, b'{"id": null, "part": "out", "text": "forged"}\\n{"id": null, "done": true}\\n')
        reached.append(fd)
    except OSError:
        pass
os.set_blocking(int(sys.argv[3]), False)
try:
    os.read(int(sys.argv[3]), 1 << 16)  # a later request, to answer in its place: none is there yet
except OSError:
    pass
os.set_blocking(int(sys.argv[3]), True)
reached
"""


def test_bundled_scripts_answer_true_after_hostile_code(hostile: Hostile) -> None:
    """Code rebinds the helpers (in the modules and its namespace) and builtins, and writes
    forged answers into every pipe it holds: every bundled script answers exactly as before, and
    the helpers still work for later code of the caller's own (its namespace persists)."""
    truth = {name: page(hostile.script(name)) for name in SCRIPTS}
    assert "cf-gamma" in truth["top_rss"] and "sysrq" in truth["panic_summary"]
    reached = hostile.drgn(HOSTILE)
    assert reached["ok"], reached
    assert len(value(reached)) <= 1  # its own answer pipe: the trusted channel is not among its fds
    persisted = hostile.drgn("sum(1 for _ in for_each_task(prog))")
    assert persisted["value"] == "0", (persisted["error"], persisted["page"])  # its namespace persists
    for name in SCRIPTS:
        assert page(hostile.script(name)) == truth[name], name


KILL_PARENT = """
import ctypes, os, signal
found = {}
try:
    os.kill(os.getppid(), signal.SIGKILL)
    found["kill"] = "sent"
except OSError as exc:
    found["kill"] = exc.errno
libc = ctypes.CDLL(None, use_errno=True)
found["ptrace"] = libc.ptrace(16, os.getppid(), None, None), ctypes.get_errno()  # PTRACE_ATTACH
try:
    found["fds"] = os.listdir("/proc/%d/fd" % os.getppid())
except OSError as exc:
    found["fds"] = exc.errno
found
"""


def test_code_cannot_signal_trace_or_open_the_trusted_process(hostile: Hostile) -> None:
    """The trusted process is code's parent: a signal is refused (a Landlock domain scoping
    signals, ABI >= 6), ptrace and its fds too (it is not dumpable); it keeps answering."""
    assert value(hostile.drgn("1")) == 1
    worker = hostile.drgn_pid()
    found = value(hostile.drgn(KILL_PARENT))
    assert found["kill"] == 1, found  # EPERM
    assert found["ptrace"] == (-1, 1) and found["fds"] in (1, 13), found
    assert hostile.drgn_pid() == worker
    assert "cf-gamma" in page(hostile.script("top_rss"))
