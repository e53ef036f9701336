"""debuginfod fetch: the agent's download (its sandboxed fetch child, then the build-id check)
against elfutils' `debuginfod-find debuginfo BUILDID`, from the same real debuginfod on
127.0.0.1 serving the fixture's kernel -dbg .deb (~590 MB vmlinux). Runs alternate, each into a
fresh cache; one warm-up fetch first, so the server's extraction cache favours neither.

    cd /work/wt-10 && .venv/bin/python bench/debuginfod.py --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crashfleet.agent import profiles, sandbox  # noqa: E402
from crashfleet.agent.dumps import debuginfod, formats  # noqa: E402
from crashfleet.agent.policy import DEFAULTS  # noqa: E402
from tests.dumps.debuginfod_server import serving  # noqa: E402
from tests.dumps.fixture import dbg_deb, ensure  # noqa: E402


class _Policy:
    settings = dict(DEFAULTS)


def ours(url: str, build_id: str, cache: Path) -> float:
    """What Debuginfod.start and _check do, minus the job bookkeeping."""
    directory = cache / build_id
    directory.mkdir(parents=True)
    part, final = directory / debuginfod.PART, directory / "debuginfo"
    profile = profiles.debuginfod(_Policy(), str(directory), debuginfod.ports([url]), debuginfod._python_paths())
    argv = [
        sys.executable,
        "-I",
        "-S",
        "-c",
        debuginfod.worker_source(),
        build_id,
        str(part),
        str(DEFAULTS["debuginfod_cache_bytes"]),
        url,
    ]
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, preexec_fn=sandbox.preexec(profile, sys.executable))
    assert formats.elf_build_id(str(part)) == build_id
    os.replace(part, final)
    return time.perf_counter() - start


def peer(url: str, build_id: str, cache: Path) -> float:
    env = dict(os.environ, DEBUGINFOD_URLS=url, DEBUGINFOD_CACHE_PATH=str(cache))
    start = time.perf_counter()
    subprocess.run(["debuginfod-find", "debuginfo", build_id], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    fx = ensure()
    build_id = formats.identify(str(fx.vmcore("sysrq")))["build_id"]
    times: dict[str, list[float]] = {"crashfleet": [], "debuginfod-find": []}
    with serving(dbg_deb(fx).parent, "debs") as url, tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:

        def fresh() -> Path:
            path = Path(tempfile.mkdtemp(dir=tmp))
            return path

        print(f"warm-up: debuginfod-find {peer(url, build_id, fresh()):.1f} s", file=sys.stderr)
        for run in range(args.repeat):
            order = [("crashfleet", ours), ("debuginfod-find", peer)]
            for name, fn in order if run % 2 == 0 else order[::-1]:
                cache = fresh()
                times[name].append(fn(url, build_id, cache))
                shutil.rmtree(cache)
                print(f"run {run + 1} {name}: {times[name][-1]:.2f} s", file=sys.stderr)
    size = fx.vmlinux.stat().st_size
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:16} median {median:6.2f} s  ({size / median / 1e6:.0f} MB/s)  runs {values}")
    ratio = statistics.median(times["crashfleet"]) / statistics.median(times["debuginfod-find"])
    print(f"ratio crashfleet / debuginfod-find: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
