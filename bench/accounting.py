"""The overhead of budgets and bounded reading (issue 23): this tree's agent against another
revision's (without them), on the fixture dump, interleaved in one run, as ratios (target <= 1.1x):

- crash open: `dumps.open` on a fresh agent (crash starts, drgn's worker starts for the drift
  check, `sys` answers), wall time;
- a drgn query: `dumps.drgn` of a task walk on an open session (this tree: in the code process,
  its own cgroup, answer streamed through the line reader), wall time;
- bpftrace time to first output: from `bpftrace.run` to the job's first progress notification
  (bpftrace compiled, attached, printed, its cgroup made), wall time.

Both agents run the same default policy (sandbox on) as root; the fixture dump comes from
tests/dumps/fixture.py (built once, cached).

    .venv/bin/python bench/accounting.py --base 4da0a0d --opens 5 --queries 30 --bpftrace 10
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.agent_start import zipapp_of
from tests.dumps.agentproc import sysrq_dumps
from tests.dumps.fixture import ensure

QUERY = "sum(1 for task in for_each_task(prog) if task.mm)"
PROGRAM = 'BEGIN { printf("first\\n"); } interval:s:2 { exit(); }'
TARGET = 1.1


class Agent:
    """An agent process on pipes; call() times a request, notifications are kept by method."""

    def __init__(self, pyz: Path, base: Path, dumps: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        os.chmod(base, 0o700)
        policy = base / "policy.json"
        policy.write_text(json.dumps({"dump_dirs": [str(dumps)]}))
        self.log = open(base / "agent.log", "wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(pyz), "serve", "--dir", str(base / "agent"), "--policy", str(policy)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.ids, self.buffer = 0, b""

    def send(self, method: str, **params: Any) -> int:
        self.ids += 1
        assert self.proc.stdin is not None
        line = {"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params}
        self.proc.stdin.write(json.dumps(line).encode() + b"\n")
        self.proc.stdin.flush()
        return self.ids

    def until(self, want: Any, timeout: float = 600) -> dict[str, Any]:
        """The first message `want(message)` accepts."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                    raise TimeoutError("no answer")
                chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
                if not chunk:
                    raise RuntimeError("the agent exited")
                self.buffer += chunk
            line, _, self.buffer = self.buffer.partition(b"\n")
            message: dict[str, Any] = json.loads(line)
            if want(message):
                return message

    def call(self, method: str, **params: Any) -> tuple[float, dict[str, Any]]:
        started = time.monotonic()
        ident = self.send(method, **params)
        message = self.until(lambda m: m.get("id") == ident)
        if "result" not in message:
            raise RuntimeError(f"{method}: {message}")
        return time.monotonic() - started, message["result"]

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(60)
        self.log.close()


def crash_open(pyz: Path, work: Path, vmcore: Path) -> float:
    agent = Agent(pyz, work, vmcore.parent)
    try:
        seconds, opened = agent.call("dumps.open", vmcore=str(vmcore))
        assert "sysrq triggered crash" in opened["page"]["text"], opened
        return seconds
    finally:
        agent.stop()


def first_output(agent: Agent) -> float:
    started = time.monotonic()
    ident = agent.send("bpftrace.run", program=PROGRAM, duration=5, wait=0)
    answer = agent.until(lambda m: m.get("id") == ident)
    job = answer["result"]["job_id"]
    agent.until(lambda m: m.get("method") == "job.progress" and m["params"]["job_id"] == job)
    seconds = time.monotonic() - started
    agent.until(lambda m: m.get("method") == "job.done" and m["params"]["job_id"] == job)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision without the accounting")
    parser.add_argument("--opens", type=int, default=5, help="crash opens of each agent")
    parser.add_argument("--queries", type=int, default=30, help="drgn queries on each agent's session")
    parser.add_argument("--bpftrace", type=int, default=10, help="bpftrace runs of each agent")
    parser.add_argument("--json", type=Path, help="also write every run and the ratios here")
    args = parser.parse_args()
    fixture = ensure()
    runs: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.chmod(root, 0o700)
        apps = {"with": zipapp_of(None, root / "with.pyz"), "without": zipapp_of(args.base, root / "without.pyz")}
        vmcore = sysrq_dumps(fixture, root / "dumps")
        runs = {name: {"crash open": [], "drgn query": [], "bpftrace first output": []} for name in apps}
        for i in range(args.opens):  # interleaved: a load change hits both alike
            for name, pyz in apps.items():
                runs[name]["crash open"].append(crash_open(pyz, root / f"open-{name}-{i}", vmcore))
                print(f"crash open {name}: {runs[name]['crash open'][-1]:.2f} s", file=sys.stderr)
        agents = {name: Agent(pyz, root / f"steady-{name}", vmcore.parent) for name, pyz in apps.items()}
        try:
            sessions = {name: a.call("dumps.open", vmcore=str(vmcore))[1]["session_id"] for name, a in agents.items()}
            for name, agent in agents.items():  # the worker started, the first query paid its imports
                agent.call("dumps.drgn", session_id=sessions[name], code=QUERY)
            for _ in range(args.queries):
                for name, agent in agents.items():
                    seconds, answer = agent.call("dumps.drgn", session_id=sessions[name], code=QUERY)
                    assert answer["ok"], answer
                    runs[name]["drgn query"].append(seconds)
            for _ in range(args.bpftrace):
                for name, agent in agents.items():
                    runs[name]["bpftrace first output"].append(first_output(agent))
        finally:
            for agent in agents.values():
                agent.stop()
    report(runs, args)


def report(runs: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    ratios = {}
    for what in runs["with"]:
        if not runs["with"][what]:
            continue
        with_, without = statistics.median(runs["with"][what]), statistics.median(runs["without"][what])
        ratios[what] = with_ / without
        verdict = "met" if ratios[what] <= TARGET else "NOT met"
        print(
            f"{what:>22}: with {with_ * 1000:9.1f} ms, without ({args.base}) {without * 1000:9.1f} ms "
            f"(medians of {len(runs['with'][what])}): {ratios[what]:.2f}x, target {TARGET}x {verdict}"
        )
    if args.json:
        args.json.write_text(json.dumps({"base": args.base, "runs": runs, "ratios": ratios}, indent=1))


if __name__ == "__main__":
    main()
