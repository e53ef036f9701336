"""An agent's start and first answer: CPU of `agent.pyz serve` answering hello (then EOF), this tree
against another revision's zipapp, interleaved in one run, as a ratio.

    .venv/bin/python bench/agent_start.py --base 3416b3f --runs 15
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELLO = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "hello", "params": {}}) + "\n"
BUILD = "from pathlib import Path; from crashfleet.controller.bundle import write_bundle; write_bundle(Path({!r}))"


def zipapp_of(rev: str | None, out: Path) -> Path:
    """This tree's zipapp (rev None), or one built from `rev`'s sources by this venv's packages."""
    if rev is None:
        subprocess.run([sys.executable, "-c", BUILD.format(str(out))], check=True)
        return out
    src = out.parent / f"src-{rev}"
    for package in ("controller", "agent", "inventory"):
        (src / "crashfleet" / package).mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, package], check=True, capture_output=True)
        subprocess.run(
            ["tar", "-x", "-C", str(src / "crashfleet" / package), "--strip-components=1"],
            input=archive.stdout,
            check=True,
        )
    (src / "crashfleet" / "__init__.py").touch()
    env = dict(os.environ, PYTHONPATH=str(src))  # ahead of the editable install
    subprocess.run([sys.executable, "-c", BUILD.format(str(out))], check=True, env=env, cwd=src)
    return out


def hello_cpu_ms(pyz: Path, python: str) -> float:
    with tempfile.TemporaryDirectory() as agent_dir:
        os.chmod(agent_dir, 0o700)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [python, str(pyz), "serve", "--dir", agent_dir], input=HELLO.encode(), capture_output=True, timeout=60
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if b'"result"' not in done.stdout:
        raise RuntimeError(f"{pyz} did not answer hello: {done.stderr[-500:]!r}")
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision to compare with")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--python", default="/usr/bin/python3", help="the hosts' interpreter")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        apps = {
            "this tree": zipapp_of(None, Path(tmp) / "new.pyz"),
            args.base: zipapp_of(args.base, Path(tmp) / "base.pyz"),
        }
        for pyz in apps.values():  # warm the page cache
            hello_cpu_ms(pyz, args.python)
        times: dict[str, list[float]] = {name: [] for name in apps}
        for _ in range(args.runs):
            for name, pyz in apps.items():
                times[name].append(hello_cpu_ms(pyz, args.python))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"{name:>12}: start + hello {median:.1f} ms CPU (median of {args.runs})")
    print(f"ratio this tree / {args.base}: {medians['this tree'] / medians[args.base]:.2f}")


if __name__ == "__main__":
    main()
