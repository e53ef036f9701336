"""What layer 1 costs per bpftrace program: the agent's token check against bpftrace's own AST dump.

For each program (typical one-liners, the bundled tools, this distribution's /usr/sbin/*.bt) it
times bpftrace_safety.check_program and `bpftrace -d` (the AST dump the agent runs for programs
with an #include), interleaved, and prints each median and the medians over all programs.

    cd /work/main && .venv/bin/python bench/bpftrace_ast.py [--repeat 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.unit's one-liners live in the checkout

from crashfleet.agent import bpftrace_safety  # noqa: E402
from crashfleet.agent.bpftrace import pinned_env  # noqa: E402
from crashfleet.agent.errors import AgentError  # noqa: E402
from crashfleet.agent.policy import DEFAULTS  # noqa: E402
from tests.unit.test_bpftrace_grammar import ONE_LINERS  # noqa: E402

ENV = dict(pinned_env(DEFAULTS), PATH="/usr/sbin:/usr/bin:/sbin:/bin", LC_ALL="C.UTF-8")


def programs() -> dict[str, str]:
    found = {"one-liner %d" % i: p for i, p in enumerate(ONE_LINERS)}
    for path in sorted(glob.glob(str(ROOT / "agent/bt/*.bt"))) + sorted(glob.glob("/usr/sbin/*.bt")):
        found[path.replace(str(ROOT) + "/", "")] = Path(path).read_text()
    return found


def tokens(program: str) -> float:
    start = time.perf_counter()
    try:
        bpftrace_safety.check_program(program)
    except AgentError:
        pass
    return time.perf_counter() - start


def dump(program: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["bpftrace", "-d", "-e", bpftrace_safety.as_run(program), "--", "0"], capture_output=True, env=ENV, timeout=120
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", type=Path)
    opts = parser.parse_args()
    rows = {}
    for name, program in programs().items():
        runs = [(tokens(program), dump(program)) for _ in range(opts.repeat)]
        rows[name] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
        print("%-28s tokens %7.2f ms   bpftrace -d %6.3f s" % (name, rows[name][0] * 1e3, rows[name][1]), flush=True)
    medians = [statistics.median(r[i] for r in rows.values()) for i in (0, 1)]
    print("median over %d programs: tokens %.2f ms, bpftrace -d %.3f s" % (len(rows), medians[0] * 1e3, medians[1]))
    if opts.json:
        opts.json.write_text(json.dumps({"programs": rows, "median": medians}, indent=1))


if __name__ == "__main__":
    main()
