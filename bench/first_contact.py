"""First contact per host: a new controller's fleet_check, agent installed or pushed, plain or with become.

    cd /work/main && .venv/bin/python bench/first_contact.py --hosts 5 [--repeat 5]

Run it with another checkout's venv to compare builds on one machine (the rig comes from this file's
checkout, crashfleet from the venv). "one host" lines connect to each host alone, one after another:
the latency of one host's first contact. "fan-out" lines contact every host at once.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # `tests.rig` lives in the checkout, not in the installed package

from crashfleet.controller.runtime import Runtime  # noqa: E402
from crashfleet.controller.settings import Settings  # noqa: E402
from crashfleet.controller.tools.fleet import fleet_check  # noqa: E402
from tests.rig import Rig, free_port  # noqa: E402


def inventory(rig: Rig, tmp: Path, become: bool) -> Path:
    data = yaml.safe_load(rig.inventory.read_text())
    for entry in data["all"]["children"][rig.prefix]["hosts"].values():
        entry["ansible_become"] = become
    path = tmp / f"inventory-{int(become)}.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def wipe(rig: Rig) -> None:
    for host in rig.hosts:
        shutil.rmtree(host.agent_dir, ignore_errors=True)


async def check(settings: Settings, pattern: str, n: int) -> float:
    rt = Runtime.create(settings, who="bench")
    try:
        started = time.perf_counter()
        result = await fleet_check(rt, pattern)
        elapsed = time.perf_counter() - started
    finally:
        await rt.close()
    if result.summary.ok != n:
        raise SystemExit(f"{pattern}: {result.summary.ok}/{n} ok: {[e.message for e in result.errors]}")
    return elapsed


async def measure(rig: Rig, settings: Settings, pushed: bool, repeat: int) -> tuple[list[float], list[float]]:
    one, fan = [], []
    for _ in range(repeat):
        for host in rig.hosts:
            if pushed:
                shutil.rmtree(host.agent_dir, ignore_errors=True)
            one.append(await check(settings, host.name, 1))
        if pushed:
            wipe(rig)
        fan.append(await check(settings, "all", rig.n))
    return one, fan


def line(name: str, runs: list[float]) -> str:
    return (
        f"{name:<40} median {statistics.median(runs) * 1000:7.0f} ms   min {min(runs) * 1000:7.0f} ms   n={len(runs)}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="crashfleet-first-"))
    try:
        with Rig(tmp / "rig", args.hosts, port=free_port(args.hosts)) as rig:
            for become in (False, True):
                settings = Settings(
                    inventory=inventory(rig, tmp, become),
                    ssh_known_hosts=rig.known_hosts,
                    audit_log=tmp / "audit.jsonl",
                )
                for pushed in (False, True):
                    wipe(rig) if pushed else await check(settings, "all", rig.n)  # installed: install first
                    one, fan = await measure(rig, settings, pushed, args.repeat)
                    what = f"{'become' if become else 'plain'}, {'pushed' if pushed else 'installed'}"
                    print(line(f"{what}: one host", one))
                    print(line(f"{what}: fan-out of {rig.n}", fan))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
