"""Fan-out benchmark: crashfleet against `clush -b`, `ansible -m raw` and `xargs -P ssh`, on one sshd rig,
in one run; wall time, controller CPU and RSS (its worker processes' included), the CPU the hosts' side
spent (sshd, shells, agents), and warm fan-outs through `crashfleet serve` as an MCP client calls them.

    cd /work/main && .venv/bin/python bench/fanout.py --hosts 50 [--repeat 3] [--json out.json]
    cd /work/main && .venv/bin/python bench/fanout.py --hosts 200 --repeat 1
    cd /work/main && .venv/bin/python bench/fanout.py --hosts 500 --repeat 1 --warm-runs 5 --workers 2

See bench/README.md for what each line means and the figures measured so far.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import getpass
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `tests.rig` lives in the checkout, not in the installed package

from mcp import Client  # noqa: E402

from bench.fanout_mcp import served_warm  # noqa: E402
from bench.procstat import rss_mb, total_cpu  # noqa: E402
from crashfleet.controller import loop  # noqa: E402
from crashfleet.controller.bundle import agent_bundle  # noqa: E402
from crashfleet.controller.models import FanoutResult  # noqa: E402
from crashfleet.controller.runtime import Runtime  # noqa: E402
from crashfleet.controller.server import build_server  # noqa: E402
from crashfleet.controller.settings import Settings  # noqa: E402
from crashfleet.controller.tools.fleet import fleet_check, fleet_run  # noqa: E402
from tests.helpers import agent_pids  # noqa: E402
from tests.rig import Rig, free_port  # noqa: E402

# Issue 20's targets, set for the 200-host rig (the wall times grow with the rig: its hosts share these CPUs).
WARM_CHECK_TARGET_S = 0.060
WARM_RUN_TARGET_S = 0.300
COLD_VS_CLUSH_TARGET = 0.8
WARM_CPU_TARGET_MS = 0.2
COLD_CPU_TARGET_MS = 4.0
TOOLS_LIST_TARGET = 24_000
PEER_TIMEOUT = 300.0
ANSIBLE_OK = re.compile(r"^\S+ \| (CHANGED|SUCCESS)\b", re.MULTILINE)


class BenchError(RuntimeError):
    """A measured run did not succeed on every host: its numbers would mean nothing."""


@dataclass
class Measure:
    """One line of the table: a name and the wall times (seconds) of its runs."""

    name: str
    runs: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # the controller's CPU seconds (its workers' too), when measured
    front_cpu: list[float] = field(default_factory=list)  # ... of which the front process's own
    host_cpu: list[float] = field(default_factory=list)  # CPU seconds of every host's sshd and what it ran
    agent_cpu: list[float] = field(default_factory=list)  # CPU seconds of the agents (and their commands), warm

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def best(self) -> float:
        return min(self.runs)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=50, help="rig size (1..1000)")
    parser.add_argument(
        "--rig-python",
        default="/usr/bin/python3",
        help="the hosts' ansible_python_interpreter (a distribution's python3, not a shim)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of every cold / peer measurement")
    parser.add_argument("--warm-runs", type=int, default=20, help="runs of every warm measurement")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--with-ansible-command",
        action="store_true",
        help="also time `ansible -m command -a true` once (slow: it ships Python)",
    )
    parser.add_argument("--workers", type=int, help="CRASHFLEET_WORKERS for crashfleet (default: the setting's, auto)")
    parser.add_argument("--deadline", type=float, default=30.0, help="CRASHFLEET_HOST_DEADLINE, seconds (default 30)")
    parser.add_argument("--no-mcp", action="store_true", help="skip the warm runs through `crashfleet serve`")
    args = parser.parse_args()
    if not 1 <= args.hosts <= 1000 or args.repeat < 1 or args.warm_runs < 1:
        parser.error("--hosts must be 1..1000, --repeat and --warm-runs at least 1")
    return args


# -- crashfleet ---------------------------------------------------------------------------------------


def settings_for(rig: Rig, tmp: Path, args: argparse.Namespace) -> Settings:
    return Settings(
        inventory=rig.inventory,
        ssh_known_hosts=rig.known_hosts,
        audit_log=tmp / "audit.jsonl",
        host_deadline=args.deadline,
        workers=args.workers,
    )


def settings_env(rig: Rig, tmp: Path, args: argparse.Namespace, audit: str) -> dict[str, str]:
    """The same settings for a crashfleet process of its own (the CLI, `crashfleet serve`)."""
    env = {
        **os.environ,
        "CRASHFLEET_INVENTORY": str(rig.inventory),
        "CRASHFLEET_SSH_KNOWN_HOSTS": str(rig.known_hosts),
        "CRASHFLEET_AUDIT_LOG": str(tmp / audit),
        "CRASHFLEET_HOST_DEADLINE": str(args.deadline),
    }
    if args.workers is not None:
        env["CRASHFLEET_WORKERS"] = str(args.workers)
    return env


def wipe_agents(rig: Rig) -> None:
    """Delete every host's agent dir: the next contact must push the agent over SFTP."""
    for host in rig.hosts:
        shutil.rmtree(host.agent_dir, ignore_errors=True)


def require_all_ok(what: str, result: FanoutResult, n: int) -> None:
    if result.summary.ok != n:
        errors = "\n".join(f"  {e.host}: {e.status}: {e.message}" for e in result.errors[:10])
        raise BenchError(f"{what}: {result.summary.ok}/{n} hosts ok\n{errors}")


def host_cpu(rig: Rig) -> float:
    """CPU seconds the rig's sshd listeners and their reaped descendants have used so far
    (sessions, shells, agents): the hosts' side of a run, once its sessions have ended."""
    total = 0
    for host in rig.hosts:
        fields = Path(f"/proc/{host.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return total / os.sysconf("SC_CLK_TCK")


async def settle(rig: Rig) -> None:
    """Wait until no session of the rig is left (their CPU is then counted in their listener)."""
    from tests.helpers import agent_pids

    for _ in range(600):
        if not agent_pids(str(rig.base)):
            return
        await asyncio.sleep(0.1)


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker_pids(rt: Runtime) -> list[int]:
    shards = rt.fleet._shards  # the workers started so far (none before the first connect)
    return [pid for pid in shards.pids() if pid] if shards is not None else []


def workers_cpu(rt: Runtime) -> float:
    return total_cpu(worker_pids(rt))


async def timed(what: str, call: Callable[[], Awaitable[FanoutResult]], rt: Runtime, n: int, into: Measure) -> None:
    """Record wall time and controller CPU (front and workers) of one fan-out that must succeed on all n hosts.
    Workers started during the call count whole: their start-up is the call's."""
    front, workers, started = own_cpu(), workers_cpu(rt), time.perf_counter()
    result = await call()
    into.runs.append(time.perf_counter() - started)
    front = own_cpu() - front
    into.front_cpu.append(front)
    into.cpu.append(front + workers_cpu(rt) - workers)
    require_all_ok(what, result, n)


async def cold_check(rig: Rig, tmp: Path, args: argparse.Namespace, into: Measure, wipe: bool) -> Runtime:
    """A new controller's first fleet_check; the caller closes the returned runtime."""
    if wipe:
        wipe_agents(rig)
    rt = Runtime.create(settings_for(rig, tmp, args), who="bench")
    try:
        await timed("cold fleet_check", lambda: fleet_check(rt, "all"), rt, rig.n, into)
    except BaseException:
        await rt.close()
        raise
    return rt


async def cold_host_cpu(rig: Rig, tmp: Path, args: argparse.Namespace, into: Measure) -> None:
    """The hosts' CPU for one cold check (agent pushed), its sessions ended."""
    await settle(rig)
    before = host_cpu(rig)
    await (await cold_check(rig, tmp, args, into, wipe=True)).close()
    await settle(rig)
    into.host_cpu.append(host_cpu(rig) - before)


async def warm_runs(rig: Rig, rt: Runtime, runs: int, check: Measure, uname: Measure) -> None:
    """fleet_check and fleet_run uname on a runtime whose links are open, and what the agents spent on
    them (a check is a ping; a run starts a sandboxed command: agent/sandbox.py's cost, issue 20's item 1)."""
    agents = agent_pids(str(rig.base))
    for what, call, into in (
        ("warm fleet_check", lambda: fleet_check(rt, "all"), check),
        ("warm fleet_run uname", lambda: fleet_run(rt, "all", "uname"), uname),
    ):
        for _ in range(runs):
            before = total_cpu(agents, children=True)
            await timed(what, call, rt, rig.n, into)
            into.agent_cpu.append(total_cpu(agents, children=True) - before)


async def tools_list_bytes(tmp: Path) -> int:
    """Size of the tools/list result as the wire carries it (compact JSON, UTF-8)."""
    rt = Runtime.create(Settings(audit_log=tmp / "audit-tools.jsonl"), who="bench")
    try:
        async with Client(build_server(rt), mode="legacy") as client:
            listed = await client.list_tools()
    finally:
        await rt.close()
    tools = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed.tools]
    return len(json.dumps({"tools": tools}, separators=(",", ":"), ensure_ascii=False).encode())


# -- peers --------------------------------------------------------------------------------------------


def run_timed(
    argv: list[str], env: dict[str, str] | None = None, stdin: str | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, timeout=PEER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{argv[0]} did not finish within {PEER_TIMEOUT:g} s") from None
    return time.perf_counter() - started, proc


def ansible_env(rig: Rig, tmp: Path) -> dict[str, str]:
    ssh_args = f"-o UserKnownHostsFile={rig.known_hosts} -o StrictHostKeyChecking=yes -o ControlMaster=no"
    return {
        **os.environ,
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_SSH_ARGS": ssh_args,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_PYTHON_INTERPRETER": "python3",  # what the agent runs too; discovery may pick a broken shim
        "ANSIBLE_HOME": str(tmp / "ansible"),
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible" / "tmp"),
    }


def ansible(rig: Rig, tmp: Path, module: str) -> float:
    """`ansible all -m MODULE -a true -f N`: exit 0 and every host CHANGED/SUCCESS."""
    argv = [
        str(ROOT / ".venv" / "bin" / "ansible"),
        "all",
        "-i",
        str(rig.inventory),
        "-m",
        module,
        "-a",
        "true",
        "-f",
        str(rig.n),
    ]
    elapsed, proc = run_timed(argv, ansible_env(rig, tmp))
    ok = len(ANSIBLE_OK.findall(proc.stdout))
    if proc.returncode != 0 or ok != rig.n:
        raise BenchError(
            f"ansible -m {module}: exit {proc.returncode}, {ok}/{rig.n} hosts ok\n"
            f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        )
    return elapsed


def xargs_ssh(rig: Rig) -> float:
    """`xargs -P N ssh ... true`, one line of arguments per host; xargs exits 0 only if every ssh did."""
    ssh = [
        "ssh",
        "-i",
        str(rig.client_key),
        "-o",
        f"UserKnownHostsFile={rig.known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
    ]
    user = getpass.getuser()
    lines = "".join(f"-p {h.port} {user}@{h.address} true\n" for h in rig.hosts)
    elapsed, proc = run_timed(["xargs", "-P", str(rig.n), "-L", "1", *ssh], stdin=lines)
    if proc.returncode != 0:
        raise BenchError(f"xargs ssh: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return elapsed


def clush(rig: Rig) -> float:
    """`clush -b -f N -w ADDRESSES uname -r` with the rig's key and known_hosts: ClusterShell, one
    OpenSSH client per host, outputs gathered and folded as `-b` does (what fleet_run does)."""
    ssh_opts = (
        f"-p {rig.port} -i {rig.client_key} -o UserKnownHostsFile={rig.known_hosts} "
        "-o StrictHostKeyChecking=yes -o BatchMode=yes"
    )
    argv = [
        str(ROOT / ".venv" / "bin" / "clush"),
        "-b",
        "-f",
        str(rig.n),
        "-l",
        getpass.getuser(),
        "-o",
        ssh_opts,
        "-w",
        ",".join(h.address for h in rig.hosts),
        "uname",
        "-r",
    ]
    elapsed, proc = run_timed(argv)
    if proc.returncode != 0:
        raise BenchError(f"clush: exit {proc.returncode}\n{proc.stdout[-1000:]}{proc.stderr[-2000:]}")
    return elapsed


def peer_host_cpu(rig: Rig, run: Callable[[Rig], float], into: Measure) -> None:
    before = host_cpu(rig)
    into.runs.append(run(rig))
    into.host_cpu.append(host_cpu(rig) - before)


def crashfleet_cli(rig: Rig, tmp: Path, args: argparse.Namespace) -> float:
    """`crashfleet check all` as a fresh process (agents installed): start-up and imports included."""
    env = settings_env(rig, tmp, args, "cli.jsonl")
    elapsed, proc = run_timed([str(ROOT / ".venv" / "bin" / "crashfleet"), "check", "all"], env)
    if proc.returncode != 0:
        raise BenchError(f"crashfleet check: exit {proc.returncode}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return elapsed


# -- the run ------------------------------------------------------------------------------------------


async def measure(rig: Rig, tmp: Path, args: argparse.Namespace) -> tuple[dict[str, Measure], int]:
    """Every measurement, interleaved per repeat so load drifts hit all of them alike."""
    names = ["cold", "cold_installed", "cli_installed", "warm_check", "warm_uname", "clush", "ansible_raw", "xargs_ssh"]
    m = {name: Measure(name) for name in names}
    for i in range(args.repeat):
        print(f"repeat {i + 1}/{args.repeat} ...", file=sys.stderr, flush=True)
        peer_host_cpu(rig, clush, m["clush"])
        m["xargs_ssh"].runs.append(xargs_ssh(rig))
        m["ansible_raw"].runs.append(ansible(rig, tmp, "raw"))
        await cold_host_cpu(rig, tmp, args, m["cold"])
        rt = await cold_check(rig, tmp, args, m["cold_installed"], wipe=False)
        try:
            if i == args.repeat - 1:  # warm: on the last controller, links open
                await warm_runs(rig, rt, args.warm_runs, m["warm_check"], m["warm_uname"])
                m["rss"] = Measure("rss", [rss_mb() + sum(rss_mb(pid) for pid in worker_pids(rt))])
                m["front_rss"] = Measure("front_rss", [rss_mb()])
                m["agent_rss"] = Measure("agent_rss", [agent_rss_mb(rig)])
                m["workers"] = Measure("workers", [float(len(worker_pids(rt)))])
        finally:
            await rt.close()
        m["cli_installed"].runs.append(crashfleet_cli(rig, tmp, args))
    if not args.no_mcp:
        print("warm runs through crashfleet serve ...", file=sys.stderr, flush=True)
        await served(rig, tmp, args, m)
    if args.with_ansible_command:
        print("ansible -m command ...", file=sys.stderr, flush=True)
        m["ansible_command"] = Measure("ansible_command", [ansible(rig, tmp, "command")])
    return m, await tools_list_bytes(tmp)


async def served(rig: Rig, tmp: Path, args: argparse.Namespace, m: dict[str, Measure]) -> None:
    """Warm fleet_check and fleet_run uname through `crashfleet serve` and the MCP client, with progress."""
    command = ROOT / ".venv" / "bin" / "crashfleet"
    try:
        runs, rss = await served_warm(command, settings_env(rig, tmp, args, "serve.jsonl"), tmp, rig.n, args.warm_runs)
    except RuntimeError as exc:
        raise BenchError(str(exc)) from None
    m["mcp_check"] = Measure("mcp_check", *runs["fleet_check"])
    m["mcp_uname"] = Measure("mcp_uname", *runs["fleet_run"])
    m["mcp_rss"] = Measure("mcp_rss", [rss])


def agent_rss_mb(rig: Rig) -> float:
    """Median resident memory of one idle agent (after hello and a few calls), in MB."""
    sizes = [size for size in map(rss_mb, agent_pids(str(rig.base))) if size]
    return statistics.median(sizes) if sizes else float("nan")


def seconds(m: Measure) -> str:
    return f"{m.median:8.3f} s {m.best:8.3f} s"


def millis(m: Measure) -> str:
    return f"{m.median * 1000:7.1f} ms{m.best * 1000:7.1f} ms"


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def mean(values: list[float]) -> float:
    """CPU figures are means over the runs: a worker's CPU is read from /proc in 10 ms ticks."""
    return sum(values) / len(values) if values else float("nan")


def controller_cpu(m: Measure) -> str:
    if not m.cpu:
        return ""
    front = f" (front {mean(m.front_cpu) * 1000:.0f} ms)" if m.front_cpu and mean(m.front_cpu) < mean(m.cpu) else ""
    return f"controller CPU {mean(m.cpu) * 1000:.0f} ms{front}"


def per_host(seconds_total: list[float], n: int) -> str:
    return f"{statistics.median(seconds_total) * 1000 / n:.1f} ms" if seconds_total else "-"


def per_call(m: Measure, n: int, values: list[float] | None = None) -> float:
    return mean(m.cpu if values is None else values) * 1000 / n


def table(m: dict[str, Measure], tools_bytes: int, n: int) -> str:
    raw, xargs, clush_s = m["ansible_raw"].median, m["xargs_ssh"].median, m["clush"].median

    def vs_peers(x: Measure) -> str:
        return (
            f"{x.median / clush_s:.2f}x clush -b, {x.median / raw:.2f}x ansible raw, {x.median / xargs:.2f}x xargs ssh"
        )

    def vs_target(x: Measure, target: float) -> str:
        return f"target <= {target * 1000:.0f} ms: {verdict(x.median <= target)}; {controller_cpu(x)}"

    def cpu_row(name: str, x: Measure) -> tuple[str, str, str]:
        value, front = per_call(x, n), per_call(x, n, x.front_cpu)
        split = f"; front {front:.3f} ms, workers {value - front:.3f} ms" if value - front > 0.0005 else ""
        return (
            name,
            f"{value:8.3f} ms  ",
            f"target <= {WARM_CPU_TARGET_MS} ms: {verdict(value <= WARM_CPU_TARGET_MS)}{split}",
        )

    cold = m["cold"]
    cold_cpu_host, cold_front = per_call(cold, n), per_call(cold, n, cold.front_cpu)
    workers = int(m["workers"].best)
    rows = [
        (
            "crashfleet cold, agent pushed",
            seconds(cold),
            f"{vs_peers(cold)}; target <= {COLD_VS_CLUSH_TARGET}x clush -b: "
            f"{verdict(cold.median <= COLD_VS_CLUSH_TARGET * clush_s)}; {controller_cpu(cold)}",
        ),
        (
            "  controller CPU per host, cold",
            f"{cold_cpu_host:8.2f} ms  ",
            f"target <= {COLD_CPU_TARGET_MS:g} ms: {verdict(cold_cpu_host <= COLD_CPU_TARGET_MS)}"
            + (f"; front {cold_front:.2f} ms, workers (their start included) the rest" if workers else ""),
        ),
        (
            "  hosts' CPU per host, cold",
            f"{per_host(cold.host_cpu, n):>11}",
            f"clush -b: {per_host(m['clush'].host_cpu, n)}",
        ),
        (
            "crashfleet cold, agent installed",
            seconds(m["cold_installed"]),
            f"{vs_peers(m['cold_installed'])}; {controller_cpu(m['cold_installed'])}",
        ),
        ("crashfleet check CLI, new process", seconds(m["cli_installed"]), vs_peers(m["cli_installed"])),
        ("crashfleet warm fleet_check", millis(m["warm_check"]), vs_target(m["warm_check"], WARM_CHECK_TARGET_S)),
        ("crashfleet warm fleet_run uname", millis(m["warm_uname"]), vs_target(m["warm_uname"], WARM_RUN_TARGET_S)),
        cpu_row("  controller CPU/host-call, check", m["warm_check"]),
        cpu_row("  controller CPU/host-call, run", m["warm_uname"]),
        (
            "  agents' CPU/host-call, check",
            f"{per_call(m['warm_check'], n, m['warm_check'].agent_cpu):8.3f} ms  ",
            "a ping: no command, no sandbox",
        ),
        (
            "  agents' CPU/host-call, run",
            f"{per_call(m['warm_uname'], n, m['warm_uname'].agent_cpu):8.3f} ms  ",
            "uname in its sandbox (issue 20's item 1)",
        ),
        (
            "  controller RSS, links open",
            f"{m['rss'].best:8.1f} MB  ",
            f"front {m['front_rss'].best:.1f} MB + {workers} worker(s); "
            + (f"target < 150 MB: {verdict(m['rss'].best < 150)}" if n >= 500 else "(target at 500 hosts)"),
        ),
        ("  one idle agent's RSS", f"{m['agent_rss'].best:8.1f} MB  ", ""),
    ]
    if "mcp_check" in m:
        for name, key, target in (
            ("served warm fleet_check (MCP)", "mcp_check", WARM_CHECK_TARGET_S),
            ("served warm fleet_run uname (MCP)", "mcp_uname", WARM_RUN_TARGET_S),
        ):
            x = m[key]
            rows.append(
                (
                    name,
                    millis(x),
                    f"target <= {target * 1000:.0f} ms: {verdict(x.median <= target)}; "
                    f"server CPU/host-call {per_call(x, n):.3f} ms (with a progress token)",
                )
            )
        rows.append(("  served controller RSS", f"{m['mcp_rss'].best:8.1f} MB  ", "crashfleet serve and its workers"))
    rows += [
        (f"clush -b -f {n} uname -r", seconds(m["clush"]), ""),
        (f"ansible -m raw -a true -f {n}", seconds(m["ansible_raw"]), ""),
        (f"xargs -P{n} ssh true", seconds(m["xargs_ssh"]), ""),
    ]
    if "ansible_command" in m:
        rows.append((f"ansible -m command -a true -f {n}", seconds(m["ansible_command"]), "one run"))
    rows.append(
        (
            "tools/list result",
            f"{tools_bytes:>11,} bytes    ",
            f"target < {TOOLS_LIST_TARGET:,} bytes: {verdict(tools_bytes < TOOLS_LIST_TARGET)}",
        )
    )
    title = f"measurement ({n} hosts, {workers} workers)"
    header = f"{title:36} {'median':>10} {'min':>10}   vs peers / target"
    return "\n".join([header, "-" * 110] + [f"{a:36} {b}   {c}".rstrip("; ") for a, b, c in rows])


def results_json(
    m: dict[str, Measure], tools_bytes: int, args: argparse.Namespace, load: tuple[float, float]
) -> dict[str, Any]:
    cold, raw, xargs, n = m["cold"].median, m["ansible_raw"].median, m["xargs_ssh"].median, args.hosts
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hosts": n,
        "workers": int(m["workers"].best),
        "host_deadline": args.deadline,
        "cpus": os.cpu_count(),
        "repeat": args.repeat,
        "warm_runs": args.warm_runs,
        "load_average_1min": {"before": load[0], "after": load[1]},
        "measurements": {
            k: {
                "median": v.median,
                "min": v.best,
                "runs": v.runs,
                "controller_cpu_s": v.cpu or None,
                "front_cpu_s": v.front_cpu or None,
                "host_cpu_s": v.host_cpu or None,
                "agent_cpu_s": v.agent_cpu or None,
            }
            for k, v in m.items()
        },
        "per_host_ms": {
            "controller_cpu_cold": per_call(m["cold"], n),
            "controller_cpu_warm_check": per_call(m["warm_check"], n),
            "controller_cpu_warm_run": per_call(m["warm_uname"], n),
            "front_cpu_warm_check": per_call(m["warm_check"], n, m["warm_check"].front_cpu),
            "front_cpu_warm_run": per_call(m["warm_uname"], n, m["warm_uname"].front_cpu),
            "agent_cpu_warm_check": per_call(m["warm_check"], n, m["warm_check"].agent_cpu),
            "agent_cpu_warm_run": per_call(m["warm_uname"], n, m["warm_uname"].agent_cpu),
        },
        "tools_list_bytes": tools_bytes,
        "ratios": {
            "cold_vs_clush": cold / m["clush"].median,
            "cold_vs_ansible_raw": cold / raw,
            "cold_vs_xargs_ssh": cold / xargs,
            "cold_installed_vs_ansible_raw": m["cold_installed"].median / raw,
        },
        "targets_met": {
            "warm_check_60ms": m["warm_check"].median <= WARM_CHECK_TARGET_S,
            "warm_run_300ms": m["warm_uname"].median <= WARM_RUN_TARGET_S,
            "cold_at_most_0.8x_clush": cold <= COLD_VS_CLUSH_TARGET * m["clush"].median,
            "warm_cpu_per_host_call_0.2ms": per_call(m["warm_uname"], n) <= WARM_CPU_TARGET_MS,
            "cold_cpu_per_host_4ms": per_call(m["cold"], n) <= COLD_CPU_TARGET_MS,
            "tools_list_under_24000_bytes": tools_bytes < TOOLS_LIST_TARGET,
        },
    }


def main() -> int:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="crashfleet-bench-"))
    agent_bundle()  # build the zipapp once, outside the timings (~25 ms per controller process)
    load_before = os.getloadavg()[0]
    rig = Rig(tmp / "rig", args.hosts, port=free_port(args.hosts), python=args.rig_python)
    try:
        rig.up()
        m, tools_bytes = loop.run(measure(rig, tmp, args))  # the event loop crashfleet runs on
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        rig.down()
        shutil.rmtree(tmp, ignore_errors=True)
    load = (load_before, os.getloadavg()[0])
    print(table(m, tools_bytes, args.hosts))
    print(
        f"{os.cpu_count()} CPUs; 1-min load average {load[0]:.1f} before, {load[1]:.1f} after "
        "(the rig's hosts share these CPUs with the controller and the peers)"
    )
    if args.json:
        args.json.write_text(json.dumps(results_json(m, tools_bytes, args, load), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
