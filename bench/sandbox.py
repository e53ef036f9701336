"""Sandbox overhead, with against without, interleaved in one run on the real tools:

  1. crash open (start to the first prompt, `sys` included) on the fixture vmcore
  2. the 2nd crash command (`sys`) on an open session
  3. a drgn query on an open worker
  4. bpftrace time to first output (`BEGIN { printf; exit }`, process start to the line)
  5. a catalogue command's CPU (`uname -r` as the agent starts a command job: its sandbox's
     plan, cgroup and preexec, the fork, the child; the agent's and the reaped children's
     user+sys time, per command, over 20 commands)

Each pair runs the same agent code (CrashSession, DrgnWorker, the bpftrace argv)
with the sandbox's preexec and with none; the ratio is with / without.

    .venv/bin/python bench/sandbox.py [rounds]
"""

from __future__ import annotations

import functools
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crashfleet.agent import profiles, sandbox  # noqa: E402
from crashfleet.agent.dumps.crash_session import CrashSession  # noqa: E402
from crashfleet.agent.dumps.drgn_client import DrgnWorker  # noqa: E402
from crashfleet.agent.dumps.service import drgn_status, worker_source  # noqa: E402
from crashfleet.agent.jobs import _clean_env  # noqa: E402
from crashfleet.agent.policy import DEFAULTS, Policy  # noqa: E402
from tests.dumps.fixture import ensure  # noqa: E402

POLICY = Policy(dict(DEFAULTS), None)
DRGN_QUERY = "len(list(for_each_task(prog)))"
BPF = 'BEGIN { printf("first\\n"); exit(); }'


def crash_session(fx: Any, work: str, sandboxed: bool) -> CrashSession:
    vmcore = str(fx.vmcore("sysrq"))
    profile = profiles.crash(POLICY, str(fx.vmlinux), vmcore, work)
    setup: Any = (
        functools.partial(sandbox.child_setup, POLICY.settings, profile, "/usr/bin/crash")
        if sandboxed
        else (lambda extra: extra)
    )
    return CrashSession("/usr/bin/crash", str(fx.vmlinux), vmcore, work, _clean_env(), setup)


def drgn_worker(fx: Any, work: str, sandboxed: bool) -> DrgnWorker:
    vmcore = str(fx.vmcore("sysrq"))
    status = drgn_status(sys.executable)
    profile = profiles.drgn(POLICY, str(fx.vmlinux), vmcore, work, status["paths"])
    preexec = sandbox.preexec(profile, sys.executable) if sandboxed else None
    return DrgnWorker(sys.executable, worker_source(), vmcore, str(fx.vmlinux), work, _clean_env(), preexec)


def bpftrace_first_output(work: str, sandboxed: bool) -> float:
    preexec = sandbox.preexec(profiles.bpftrace(POLICY, work), "/usr/bin/bpftrace") if sandboxed else None
    started = time.perf_counter()
    proc = subprocess.Popen(
        ["/usr/bin/bpftrace", "-e", BPF],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=work,
        env=_clean_env(),
        preexec_fn=preexec,
        start_new_session=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(b"first"):
            break
    elapsed = time.perf_counter() - started
    proc.wait()
    return elapsed


def _cpu() -> float:
    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


def catalogue_command_cpu(sandboxed: bool, count: int = 20) -> float:
    """CPU seconds per `uname -r` started as service.run starts a catalogue command."""
    started = _cpu()
    for _ in range(count):
        preexec = (
            sandbox.child_setup(POLICY.settings, profiles.command(POLICY), "/usr/bin/uname") if sandboxed else None
        )
        proc = subprocess.Popen(
            ["/usr/bin/uname", "-r"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_clean_env(),
            start_new_session=True,
            close_fds=True,
            preexec_fn=preexec,
        )
        proc.communicate()
        sandbox.release(preexec)
    return (_cpu() - started) / count


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(rounds: int) -> None:
    fx = ensure()
    results: dict[str, dict[bool, list[float]]] = {
        k: {True: [], False: []}
        for k in ("crash open", "2nd crash command", "drgn query", "bpftrace first output", "catalogue command CPU")
    }
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        for i in range(rounds):
            for sandboxed in (True, False) if i % 2 else (False, True):  # interleaved, order alternating
                work = tempfile.mkdtemp(dir=tmp)
                crash = crash_session(fx, work, sandboxed)
                results["crash open"][sandboxed].append(
                    timed(lambda crash=crash: (crash.start(), crash.run_raw("sys", 60)))
                )
                sink: list[bytes] = []
                results["2nd crash command"][sandboxed].append(
                    min(timed(lambda crash=crash, sink=sink: crash.run("sys", None, sink.append, 60)) for _ in range(5))
                )
                crash.close()
                worker = drgn_worker(fx, work, sandboxed)
                worker.start()
                results["drgn query"][sandboxed].append(
                    min(timed(lambda worker=worker: worker.call(DRGN_QUERY, 60)) for _ in range(5))
                )
                worker.close()
                results["bpftrace first output"][sandboxed].append(bpftrace_first_output(work, sandboxed))
                results["catalogue command CPU"][sandboxed].append(catalogue_command_cpu(sandboxed))
    print(f"sandbox overhead, {rounds} rounds, medians (host sandbox: {sandbox.summary()})")
    print(f"{'':24} {'with':>10} {'without':>10} {'ratio':>7}")
    for name, by in results.items():
        on, off = statistics.median(by[True]), statistics.median(by[False])
        print(f"{name:24} {on * 1000:9.1f}ms {off * 1000:9.1f}ms {on / off:6.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
