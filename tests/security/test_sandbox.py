"""Layer 2 alone: the OS sandbox stops what layer 1 would refuse, when layer 1 is bypassed.

Each test starts the real tool through agent/sandbox.py directly (no allow-list in the
way) with a deliberately unsafe command, and checks the host: canary files that must
not appear, a root-only secret that must not come back, no network, no process left.
"""

from __future__ import annotations

import functools
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from crashfleet.agent import profiles, sandbox
from crashfleet.agent.dumps.crash_session import CrashSession
from crashfleet.agent.dumps.drgn_client import DrgnWorker
from crashfleet.agent.dumps.service import drgn_status, worker_source
from crashfleet.agent.jobs import _clean_env
from crashfleet.agent.policy import DEFAULTS, Policy
from tests.dumps.fixture import Fixture
from tests.rig import procs
from tests.security.attack import Canaries, secret_file, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox's namespaces need root")
POLICY = Policy(dict(DEFAULTS), None)


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    path, text = secret_file(Path("/root"))
    yield path, text
    path.unlink()


def run_sandboxed(
    profile: sandbox.Profile, argv: list[str], cwd: str, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        start_new_session=True,
        env=_clean_env(),
        preexec_fn=sandbox.preexec(profile, argv[0]),
        **kw,
    )  # type: ignore[call-overload]


def test_this_host_gives_the_full_sandbox() -> None:
    status = sandbox.status()
    assert status["sandbox"] == "full", status
    assert status["landlock_abi"] >= 1 and status["namespaces"]


def test_a_shell_cannot_run_new_programs_or_read_secrets(
    tmp_path: Path, secret: tuple[Path, str], canaries: Canaries
) -> None:
    """Even a shell as 'the tool' (what `!` in crash would start) is stuck: it may not exec
    anything else, write outside its work dir, or read root's files."""
    work = tmp_path / "work"
    work.mkdir()
    script = (
        f"touch {canaries.path('touch')}; echo x > {canaries.path('redirect')}; echo x > /root/{canaries.name('r')}; "
        f"read s < {secret[0]}; echo secret=$s; echo ok > {work}/mine; read m < {work}/mine; echo mine=$m; "
        "read line < /etc/shadow; echo shadow=$line"
    )
    done = run_sandboxed(
        profiles.crash(POLICY, "/nonexistent", "/nonexistent", str(work)), ["/bin/sh", "-c", script], str(work)
    )
    assert "mine=ok" in done.stdout  # its own work dir is writable
    assert secret[1] not in done.stdout + done.stderr
    assert "shadow=" in done.stdout and "shadow=root" not in done.stdout
    assert "touch: Permission denied" in done.stderr  # exec of anything but the tool
    canaries.assert_none()


def test_crash_shell_escapes_fail_in_the_sandbox(
    dump_fixture: Fixture, tmp_path: Path, secret: tuple[Path, str], canaries: Canaries
) -> None:
    """Straight to crash's prompt, no allow-list: `!`, a pipe to a shell, rd -r and set error."""
    fx = dump_fixture
    work = tmp_path / "crash"
    work.mkdir()
    profile = profiles.crash(POLICY, str(fx.vmlinux), str(fx.vmcore("sysrq")), str(work))
    crash = CrashSession(
        "/usr/bin/crash",
        str(fx.vmlinux),
        str(fx.vmcore("sysrq")),
        str(work),
        _clean_env(),
        functools.partial(sandbox.child_setup, POLICY.settings, profile, "/usr/bin/crash"),
    )
    crash.start()
    try:
        seen = []
        for line in (
            f"!touch {canaries.path('bang')}",
            f"sys ! touch {canaries.path('mid')}",
            f"sys | touch {canaries.path('pipe')}",
            f"log > {canaries.path('redirect')}",
            f"rd -r {canaries.path('rd')} jiffies 8",
            f"set error {canaries.path('error')}",
            "nosuchcommand",
            f"!cat {secret[0]}",
            f"gdb shell cat {secret[0]}",
        ):
            seen.append(crash.run_raw(line, timeout=60))
        out: list[bytes] = []
        assert crash.run("sys", None, out.append, 60)["ended"] == "done"
        assert b"sysrq triggered crash" in b"".join(out)  # the session still answers
    finally:
        crash.close()
    assert secret[1] not in "".join(seen)
    canaries.assert_none()
    assert crash.pid is None


def test_bpftrace_unsafe_calls_fail_in_the_sandbox(
    tmp_path: Path, secret: tuple[Path, str], canaries: Canaries
) -> None:
    """bpftrace with --unsafe, no program check: system(), cat() of a root file, a quoted include."""
    header = tmp_path / "h"
    header.mkdir()
    work = tmp_path / "bt"
    work.mkdir()
    profile = profiles.bpftrace(POLICY, str(work))
    programs = [
        f'BEGIN {{ system("touch {canaries.path("system")}"); exit(); }}',
        f'BEGIN {{ cat("{secret[0]}"); exit(); }}',
        f'#include "{secret[0]}"\nBEGIN {{ exit(); }}',
    ]
    outputs = [run_sandboxed(profile, ["/usr/bin/bpftrace", "--unsafe", "-e", p], str(work)) for p in programs]
    text = "".join(o.stdout + o.stderr for o in outputs)
    assert secret[1] not in text
    assert "Permission denied" in outputs[1].stderr  # cat() opened nothing
    canaries.assert_none()
    ok = run_sandboxed(profile, ["/usr/bin/bpftrace", "-e", 'BEGIN { printf("traced\\n"); exit(); }'], str(work))
    assert "traced" in ok.stdout, ok.stderr  # the sandbox still lets bpftrace trace


ESCAPE = """
import os, socket, subprocess, time
found = {}
for path in ("/tmp", "/var/tmp", "/dev/shm"):
    try:
        open(os.path.join(path, CANARY), "w").write("x")
        found[path] = "wrote (private)"
    except OSError as exc:
        found[path] = str(exc)
for path in (SECRET, "/etc/shadow"):
    try:
        found[path] = open(path).read()
    except OSError as exc:
        found[path] = "refused: %s" % exc.strerror
try:
    socket.socket().connect(("127.0.0.1", PORT))  # not create_connection: no lazy idna import as nobody
    found["tcp"] = "connected"
except OSError as exc:
    found["tcp"] = "refused: %s" % exc
try:
    found["su"] = subprocess.run(["/usr/bin/su", "-c", "id"], capture_output=True, timeout=5).returncode
except OSError as exc:
    found["su"] = "refused: %s" % exc.strerror
if os.fork() == 0:
    os.setsid()
    time.sleep(600)
found["uid"] = os.getuid()
found
"""


def test_drgn_code_cannot_escape_its_worker(
    dump_fixture: Fixture, tmp_path: Path, secret: tuple[Path, str], canaries: Canaries
) -> None:
    """Code drgn runs as nobody: no file outside its private tmp, no secret, no network, no setuid
    program, and a forked, setsid'd child dies with the worker."""
    fx = dump_fixture
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    accepted: list[object] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    work = tmp_path / "drgn"
    work.mkdir(mode=0o711)
    status = drgn_status(sys.executable)
    assert status["importable"], status
    profile = profiles.drgn(POLICY, str(fx.vmlinux), str(fx.vmcore("sysrq")), str(work), status["paths"])
    worker = DrgnWorker(
        sys.executable,
        worker_source(),
        str(fx.vmcore("sysrq")),
        str(fx.vmlinux),
        str(work),
        _clean_env(),
        sandbox.preexec(profile, sys.executable),
    )
    worker.start()
    code = (
        ESCAPE.replace("CANARY", repr(canaries.name("drgn")))
        .replace("SECRET", repr(str(secret[0])))
        .replace("PORT", str(port))
    )
    try:
        answer = worker.call(code, timeout=60)
        assert answer["ok"], answer
        found = eval(answer["value"])  # a dict repr our own code printed
        tree = procs.descendants([worker.pid]) if worker.pid else []
        assert tree, "the forked child should be alive while the worker is"
    finally:
        worker.close()
        listener.close()
    assert found["uid"] == pwd.getpwnam("nobody").pw_uid
    assert all(
        v == "wrote (private)" for k, v in found.items() if (k.startswith("/") and "tmp" in k) or k == "/dev/shm"
    )
    assert found[str(secret[0])].startswith("refused") and found["/etc/shadow"].startswith("refused")
    assert found["tcp"].startswith("refused") and not accepted
    assert str(found["su"]).startswith("refused")
    canaries.assert_none(names=[canaries.name("drgn")], dirs=["/tmp", "/var/tmp", "/dev/shm"])
    assert wait_until(lambda: not [p for p in tree if procs.alive(p)], 10), "a drgn descendant outlived the worker"


AGENT_STANDIN = """
import subprocess, sys
from crashfleet.agent import profiles, sandbox
p = subprocess.Popen(["/bin/sleep", "600"], preexec_fn=sandbox.preexec(profiles.command(), "/bin/sleep"),
                     start_new_session=True)
print(p.pid, flush=True)
sys.stdin.read()
"""


def test_a_tool_dies_when_the_agent_is_killed() -> None:
    """SIGKILL to the agent: its sandboxed tools do not live on as orphans."""
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT_STANDIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert agent.stdout is not None
    waiter = int(agent.stdout.readline())
    tree = [waiter] + procs.descendants([waiter])
    assert any("sleep" in procs.cmdline(p) for p in tree)
    agent.kill()
    agent.wait()
    assert wait_until(lambda: not [p for p in tree if procs.alive(p)], 10), f"left running: {tree}"


def test_a_catastrophic_regex_stops_only_its_child() -> None:
    """(a+)+$ over 4,000 a's would hold the GIL for ages: in fork_call it is killed by its CPU
    limit while this process's other threads go on."""
    policy = Policy(dict(DEFAULTS, regex_cpu_seconds=1), None)
    import re

    ticks = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.05):
            ticks.append(1)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        with pytest.raises(sandbox.ChildFailed) as failed:
            sandbox.fork_call(lambda: bool(re.search(r"(a+)+$", "a" * 4000 + "!")), profiles.search(policy), 30)
    finally:
        stop.set()
        ticker.join()
    assert failed.value.signal in (signal.SIGXCPU, signal.SIGKILL)
    assert len(ticks) >= 2  # the other thread kept running while the child burned its CPU
    assert sandbox.fork_call(lambda: {"n": 1}, profiles.search(policy), 30) == {"n": 1}


def test_a_partial_sandbox_is_reported_and_policy_can_refuse_it() -> None:
    """As a user that is not root the namespaces are missing: facts say partial, and
    require_sandbox refuses to start a tool."""
    code = (
        "import json, os\n"
        "from crashfleet.agent import sandbox, profiles\n"
        "from crashfleet.agent.errors import AgentError\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "s = sandbox.status()\n"
        "try:\n    sandbox.child_setup({'require_sandbox': True}, profiles.probe(), '/bin/true'); r = None\n"
        "except AgentError as e:\n    r = [e.kind, e.extra.get('rule')]\n"
        "print(json.dumps([s, sandbox.summary(), r]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    status, summary, refused = json.loads(done.stdout)
    assert status["sandbox"] == "partial" and summary.startswith("partial (")
    assert "not root" in summary
    assert refused == ["sandbox_unavailable", "sandbox.required"]
