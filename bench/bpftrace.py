"""bpftrace benchmark on one sshd rig, in one run:

1. time to first output: `bpftrace_run` through crashfleet (warm agent) against
   `ssh HOST bpftrace -e ...` on the same rig host (target: at most 1.2x);
2. a 1 s program on every rig host with warm agents, maps merged (target: under 1.5 s wall),
   against its lower bound: the same number of bpftrace processes started directly, in
   parallel, on this machine (no ssh, no crashfleet), and one alone (bpftrace's own cost).

    cd /work/main && .venv/bin/python bench/bpftrace.py --hosts 50 [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `tests.rig` lives in the checkout, not in the installed package

from crashfleet.controller.runtime import Runtime  # noqa: E402
from crashfleet.controller.settings import Settings  # noqa: E402
from crashfleet.controller.tools.bpftrace import bpftrace_result, bpftrace_run  # noqa: E402
from crashfleet.controller.tools.fleet import fleet_check  # noqa: E402
from tests.rig import Rig, free_port  # noqa: E402

FIRST_OUTPUT = 'BEGIN { printf("first\\n"); exit(); }'
ONE_SECOND = "tracepoint:sched:sched_switch { @switches = count(); }"
RATIO_TARGET = 1.2
FLEET_TARGET_S = 1.5


class BenchError(RuntimeError):
    pass


def ssh_first_output(rig: Rig) -> float:
    """Seconds from starting `ssh web01 bpftrace -e ...` to its line "first" on our stdin."""
    host = rig.hosts[0]
    argv = [
        "ssh",
        "-i",
        str(rig.client_key),
        "-o",
        f"UserKnownHostsFile={rig.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-p",
        str(host.port),
        f"{getpass.getuser()}@{host.address}",
        "bpftrace",
        "-e",
        f"'{FIRST_OUTPUT}'",
    ]
    started = time.perf_counter()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "first":
                elapsed = time.perf_counter() - started
                proc.wait(30)
                return elapsed
    raise BenchError(f"ssh bpftrace printed no 'first' line (exit {proc.returncode})")


def direct_parallel(n: int) -> tuple[float, float]:
    """(wall s, CPU s per process) of n bpftrace processes of the 1 s program started at once, directly."""
    program = f"{ONE_SECOND}\ninterval:ms:1000 {{ exit(); }}\n"  # what the agent adds for duration=1
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            ["bpftrace", "-f", "json", "-e", program], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(n)
    ]
    if any(p.wait(60) != 0 for p in procs):
        raise BenchError("a bpftrace started directly failed")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu / n


async def crashfleet_first_output(rt: Runtime) -> float:
    started = time.perf_counter()
    result = await bpftrace_run(rt, "web01", program=FIRST_OUTPUT)
    elapsed = time.perf_counter() - started
    if result.summary.ok != 1 or "first" not in (result.groups[0].output or ""):
        raise BenchError(f"crashfleet bpftrace_run failed: {result.model_dump_json()[:1500]}")
    return elapsed


async def fleet_second(rt: Runtime, n: int) -> tuple[float, int]:
    started = time.perf_counter()
    result = await bpftrace_run(rt, "all", program=ONE_SECOND, duration=1)
    if result.job_id:  # over the short wait on a loaded machine: the wall runs until the merged result
        result = await bpftrace_result(rt, result.job_id, wait=60)
    elapsed = time.perf_counter() - started
    if result.summary.ok != n or not result.maps:
        raise BenchError(f"1 s program: {result.summary.ok}/{n} ok: {result.model_dump_json()[:1500]}")
    return elapsed, len(result.maps[0].per_host)


async def bench(rig: Rig, tmp: Path, repeat: int) -> dict[str, object]:
    settings = Settings(inventory=rig.inventory, ssh_known_hosts=rig.known_hosts, audit_log=tmp / "audit.jsonl")
    rt = Runtime.create(settings, who="bench")
    try:
        check = await fleet_check(rt, "all")
        if check.summary.ok != rig.n:
            raise BenchError(f"fleet_check: {check.summary.ok}/{rig.n} ok")
        await crashfleet_first_output(rt)  # warm: the agent's first bpftrace call
        ours, peer = [], []
        for _ in range(repeat):  # interleaved, so a load change hits both alike
            ours.append(await crashfleet_first_output(rt))
            peer.append(ssh_first_output(rig))
        await fleet_second(rt, rig.n)  # warm every agent's bpftrace path once
        fleet, direct, alone = [], [], []
        for _ in range(repeat):  # interleaved again
            fleet.append(await fleet_second(rt, rig.n))
            direct.append(direct_parallel(rig.n))
            alone.append(direct_parallel(1))
    finally:
        await rt.close()
    ours_med, peer_med = statistics.median(ours), statistics.median(peer)
    fleet_med = statistics.median(f[0] for f in fleet)
    return {
        "hosts": rig.n,
        "repeat": repeat,
        "first_output": {
            "crashfleet_s": ours,
            "ssh_bpftrace_s": peer,
            "crashfleet_median_s": ours_med,
            "ssh_median_s": peer_med,
            "ratio": ours_med / peer_med,
            "target_ratio": RATIO_TARGET,
            "met": ours_med / peer_med <= RATIO_TARGET,
        },
        "one_second_program": {
            "wall_s": [f[0] for f in fleet],
            "median_s": fleet_med,
            "hosts_merged": fleet[0][1],
            "target_s": FLEET_TARGET_S,
            "met": fleet_med < FLEET_TARGET_S,
            "direct_parallel_s": [d[0] for d in direct],
            "direct_parallel_median_s": statistics.median(d[0] for d in direct),
            "direct_one_median_s": statistics.median(a[0] for a in alone),
            "bpftrace_cpu_s_per_process": statistics.median(d[1] for d in direct),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if subprocess.run(["mountpoint", "-q", "/sys/kernel/tracing"], check=False).returncode != 0:
        subprocess.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"], check=True)
    with tempfile.TemporaryDirectory(prefix="crashfleet-bench-bpf-") as tmp:
        with Rig(Path(tmp) / "rig", args.hosts, port=free_port(args.hosts)) as rig:
            try:
                out = asyncio.run(bench(rig, Path(tmp), args.repeat))
            except BenchError as exc:
                print(f"bench failed: {exc}", file=sys.stderr)
                return 1
    first, fleet = out["first_output"], out["one_second_program"]
    assert isinstance(first, dict) and isinstance(fleet, dict)
    print(f"time to first output, web01 (median of {args.repeat}):")
    print(f"  crashfleet bpftrace_run   {first['crashfleet_median_s']:.3f} s")
    print(f"  ssh HOST bpftrace -e      {first['ssh_median_s']:.3f} s")
    print(
        f"  ratio                     {first['ratio']:.2f}x (target <= {RATIO_TARGET}x: "
        f"{'met' if first['met'] else 'NOT met'})"
    )
    print(f"1 s program on {args.hosts} hosts, warm agents, maps merged (median of {args.repeat}):")
    print(
        f"  wall                      {fleet['median_s']:.3f} s (target < {FLEET_TARGET_S} s: "
        f"{'met' if fleet['met'] else 'NOT met'}); runs: " + ", ".join(f"{w:.2f}" for w in fleet["wall_s"])
    )
    print(
        f"  lower bound: {args.hosts} bpftrace started directly in parallel, no ssh: "
        f"{fleet['direct_parallel_median_s']:.3f} s; one alone {fleet['direct_one_median_s']:.3f} s; "
        f"bpftrace CPU {fleet['bpftrace_cpu_s_per_process'] * 1000:.0f} ms per process"
    )
    print(f"  crashfleet overhead over the lower bound: {fleet['median_s'] - fleet['direct_parallel_median_s']:+.3f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
