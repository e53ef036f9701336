"""Fan-out benchmark: crashfleet against `clush -b`, `ansible -m raw` and `xargs -P ssh`, on one sshd rig,
in one run; wall time, controller CPU and RSS, and the CPU the hosts' side spent (sshd, shells, agents).

    cd /work/main && .venv/bin/python bench/fanout.py --hosts 50 [--repeat 3] [--json out.json]
    cd /work/main && .venv/bin/python bench/fanout.py --hosts 200 --repeat 1
    cd /work/main && .venv/bin/python bench/fanout.py --hosts 500 --repeat 1 --warm-runs 5

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

from crashfleet.controller.bundle import agent_bundle  # noqa: E402
from crashfleet.controller.models import FanoutResult  # noqa: E402
from crashfleet.controller.runtime import Runtime  # noqa: E402
from crashfleet.controller.server import build_server  # noqa: E402
from crashfleet.controller.settings import Settings  # noqa: E402
from crashfleet.controller.tools.fleet import fleet_check, fleet_run  # noqa: E402
from tests.rig import Rig, free_port  # noqa: E402

WARM_TARGET_S = 0.100
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
    cpu: list[float] = field(default_factory=list)  # the controller's own CPU seconds, when measured
    host_cpu: list[float] = field(default_factory=list)  # CPU seconds of every host's sshd and what it ran

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
    args = parser.parse_args()
    if not 1 <= args.hosts <= 1000 or args.repeat < 1 or args.warm_runs < 1:
        parser.error("--hosts must be 1..1000, --repeat and --warm-runs at least 1")
    return args


# -- crashfleet ---------------------------------------------------------------------------------------


def settings_for(rig: Rig, tmp: Path) -> Settings:
    return Settings(inventory=rig.inventory, ssh_known_hosts=rig.known_hosts, audit_log=tmp / "audit.jsonl")


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


async def timed(what: str, call: Callable[[], Awaitable[FanoutResult]], n: int, into: Measure) -> None:
    """Record wall time and controller CPU of one fan-out that must succeed on all n hosts."""
    cpu, started = own_cpu(), time.perf_counter()
    result = await call()
    into.runs.append(time.perf_counter() - started)
    into.cpu.append(own_cpu() - cpu)
    require_all_ok(what, result, n)


async def cold_check(rig: Rig, tmp: Path, into: Measure, wipe: bool) -> Runtime:
    """A new controller's first fleet_check; the caller closes the returned runtime."""
    if wipe:
        wipe_agents(rig)
    rt = Runtime.create(settings_for(rig, tmp), who="bench")
    try:
        await timed("cold fleet_check", lambda: fleet_check(rt, "all"), rig.n, into)
    except BaseException:
        await rt.close()
        raise
    return rt


async def cold_host_cpu(rig: Rig, tmp: Path, into: Measure) -> None:
    """The hosts' CPU for one cold check (agent pushed), its sessions ended."""
    await settle(rig)
    before = host_cpu(rig)
    await (await cold_check(rig, tmp, into, wipe=True)).close()
    await settle(rig)
    into.host_cpu.append(host_cpu(rig) - before)


async def warm_runs(rt: Runtime, n: int, runs: int, check: Measure, uname: Measure) -> None:
    """fleet_check and fleet_run uname on a runtime whose links are open."""
    for _ in range(runs):
        await timed("warm fleet_check", lambda: fleet_check(rt, "all"), n, check)
    for _ in range(runs):
        await timed("warm fleet_run uname", lambda: fleet_run(rt, "all", "uname"), n, uname)


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


def crashfleet_cli(rig: Rig, tmp: Path) -> float:
    """`crashfleet check all` as a fresh process (agents installed): start-up and imports included."""
    env = {
        **os.environ,
        "CRASHFLEET_INVENTORY": str(rig.inventory),
        "CRASHFLEET_SSH_KNOWN_HOSTS": str(rig.known_hosts),
        "CRASHFLEET_AUDIT_LOG": str(tmp / "cli.jsonl"),
    }
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
        await cold_host_cpu(rig, tmp, m["cold"])
        rt = await cold_check(rig, tmp, m["cold_installed"], wipe=False)
        try:
            if i == args.repeat - 1:  # warm: on the last controller, links open
                await warm_runs(rt, rig.n, args.warm_runs, m["warm_check"], m["warm_uname"])
                m["rss"] = Measure("rss", [rss_mb()])
                m["agent_rss"] = Measure("agent_rss", [agent_rss_mb(rig)])
        finally:
            await rt.close()
        m["cli_installed"].runs.append(crashfleet_cli(rig, tmp))
    if args.with_ansible_command:
        print("ansible -m command ...", file=sys.stderr, flush=True)
        m["ansible_command"] = Measure("ansible_command", [ansible(rig, tmp, "command")])
    return m, await tools_list_bytes(tmp)


def rss_mb() -> float:
    """The controller's resident memory now (all links open), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def agent_rss_mb(rig: Rig) -> float:
    """Median resident memory of one idle agent (after hello and a few calls), in MB."""
    from tests.helpers import agent_pids

    sizes = []
    for pid in agent_pids(str(rig.base)):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        sizes += [int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")]
    return statistics.median(sizes) if sizes else float("nan")


def seconds(m: Measure) -> str:
    return f"{m.median:8.3f} s {m.best:8.3f} s"


def millis(m: Measure) -> str:
    return f"{m.median * 1000:7.1f} ms{m.best * 1000:7.1f} ms"


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def controller_cpu(m: Measure) -> str:
    return f"controller CPU {statistics.median(m.cpu) * 1000:.0f} ms" if m.cpu else ""


def per_host(seconds_total: list[float], n: int) -> str:
    return f"{statistics.median(seconds_total) * 1000 / n:.1f} ms" if seconds_total else "-"


def table(m: dict[str, Measure], tools_bytes: int, n: int) -> str:
    raw, xargs, clush_s = m["ansible_raw"].median, m["xargs_ssh"].median, m["clush"].median

    def vs_peers(x: Measure) -> str:
        return (
            f"{x.median / clush_s:.2f}x clush -b, {x.median / raw:.2f}x ansible raw, {x.median / xargs:.2f}x xargs ssh"
        )

    def vs_target(x: Measure) -> str:
        return f"target < {WARM_TARGET_S * 1000:.0f} ms: {verdict(x.median < WARM_TARGET_S)}; {controller_cpu(x)}"

    cold = m["cold"]
    cold_cpu_host = statistics.median(cold.cpu) * 1000 / n
    warm_cpu_call = statistics.median(m["warm_check"].cpu) * 1000 / n
    rows = [
        (
            "crashfleet cold, agent pushed",
            seconds(cold),
            f"{vs_peers(cold)}; target <= clush -b: {verdict(cold.median <= clush_s)}; {controller_cpu(cold)}",
        ),
        (
            "  controller CPU per host, cold",
            f"{cold_cpu_host:8.2f} ms  ",
            f"target <= 4 ms: {verdict(cold_cpu_host <= 4)}",
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
        ("crashfleet warm fleet_check", millis(m["warm_check"]), vs_target(m["warm_check"])),
        ("crashfleet warm fleet_run uname", millis(m["warm_uname"]), vs_target(m["warm_uname"])),
        (
            "  controller CPU per host-call, warm",
            f"{warm_cpu_call:8.3f} ms  ",
            f"target <= 0.1 ms: {verdict(warm_cpu_call <= 0.1)}",
        ),
        (
            "  controller RSS, links open",
            f"{m['rss'].best:8.1f} MB  ",
            f"target < 150 MB: {verdict(m['rss'].best < 150)}" if n >= 500 else "(target at 500 hosts)",
        ),
        ("  one idle agent's RSS", f"{m['agent_rss'].best:8.1f} MB  ", ""),
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
    header = f"{'measurement (' + str(n) + ' hosts)':34} {'median':>10} {'min':>10}   vs peers / target"
    return "\n".join([header, "-" * 100] + [f"{a:34} {b}   {c}".rstrip("; ") for a, b, c in rows])


def results_json(
    m: dict[str, Measure], tools_bytes: int, args: argparse.Namespace, load: tuple[float, float]
) -> dict[str, Any]:
    cold, raw, xargs = m["cold"].median, m["ansible_raw"].median, m["xargs_ssh"].median
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "hosts": args.hosts,
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
                "host_cpu_s": v.host_cpu or None,
            }
            for k, v in m.items()
        },
        "tools_list_bytes": tools_bytes,
        "ratios": {
            "cold_vs_clush": cold / m["clush"].median,
            "cold_vs_ansible_raw": cold / raw,
            "cold_vs_xargs_ssh": cold / xargs,
            "cold_installed_vs_ansible_raw": m["cold_installed"].median / raw,
        },
        "targets_met": {
            "warm_check_under_100ms": m["warm_check"].median < WARM_TARGET_S,
            "cold_not_slower_than_clush": cold <= m["clush"].median,
            "cold_not_slower_than_ansible_raw": cold <= raw,
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
        m, tools_bytes = asyncio.run(measure(rig, tmp, args))
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
