"""Fleet triage, measured against what it replaces: `crash` started on every dump to read its log.

Per host, whole processes timed side by side (any process timer, e.g. /usr/bin/time -v, or a
harness that alternates two commands): `prepare` lays one host's dump out in DIR and prints the
two commands to compare, the agent answering one dumps.triage (its start included) and the peer,
`crash -s vmlinux vmcore` printing `log`:

  bench/triage.py prepare --layout elf --kind softlockup_a --dir /var/tmp/bench-triage/elf
      (elf: drgn reads the printk buffer; kdump-dmesg: kdump's dmesg file; kdump: makedumpfile)

A fleet (the sshd rig, each host its own dump dir, crash_triage through the real MCP server):

  bench/triage.py fleet --hosts 14 [--budget 40]   first answer and complete answer (job_status)
  bench/triage.py fleet-crash --hosts 14           the peer: `crash ... log` on every host's dump at once

Run from the repository root with the test venv (.venv/bin/python); the fixtures are the tests'
(tests/dumps/crash_kinds.py), built on first use.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING or sys.argv[1:2] != ["ask"]:  # `ask` is what is timed: stdlib only
    import yaml

    from crashfleet.controller.bundle import write_bundle
    from tests.dumps.crash_kinds import KINDS, CrashKinds, ensure_kinds
    from tests.dumps.crash_scenes import Scene, lay_out
    from tests.e2e.conftest import LEGACY, StdioServer, structured
    from tests.rig import Rig, free_port

FLEET_LAYOUTS = ("kdump-dmesg", "kdump", "elf")  # cycled over the fleet's hosts


def prepare(args: argparse.Namespace) -> None:
    """One host's dump, an agent zipapp, its policy and the requests; the two commands to time."""
    ck = ensure_kinds()
    work = Path(args.dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    dump = lay_out(Scene(args.layout, args.kind), work / "crash", ck)
    write_bundle(work / "agent.pyz")
    policy = {"dump_dirs": [str(work / "crash")], "drgn_python": sys.executable, "vmlinux_standard_dirs": False}
    (work / "policy.json").write_text(json.dumps(policy))
    (work / "crash.in").write_text("log\nquit\n")
    print(f"{sys.executable} {__file__} ask --dir {work}")
    print(f"sh -c 'exec crash -s --no_crashrc --no_scroll {ck.vmlinux} {ck.vmcore(args.kind)} < {work}/crash.in'")
    if dump is None:
        print("(no dump laid out: this layout has none)")


def ask(args: argparse.Namespace) -> None:
    """One dumps.triage from a fresh agent of the prepared DIR; stdin closed once it answered."""
    work = Path(args.dir)
    agent = subprocess.Popen(
        [
            sys.executable,
            str(work / "agent.pyz"),
            "serve",
            "--dir",
            str(work / "agent"),
            "--policy",
            str(work / "policy.json"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert agent.stdin and agent.stdout
    agent.stdin.write(b'{"jsonrpc": "2.0", "id": 1, "method": "dumps.triage", "params": {}}\n')
    agent.stdin.flush()
    answer = json.loads(agent.stdout.readline())["result"]
    agent.stdin.close()
    agent.wait()
    print(answer["source"], "|", (answer["report"] or {}).get("title"))


def _scenes(n: int) -> list[tuple[str, Scene]]:
    kinds = [k for k in KINDS if k not in ("null_deref", "softlockup_a")] + ["null_deref", "softlockup_a"]
    scenes = []
    for i in range(n):
        layout = FLEET_LAYOUTS[i % len(FLEET_LAYOUTS)]
        kind = ("null_deref", "softlockup_a")[i % 2] if layout != "elf" else kinds[i % len(kinds)]
        scenes.append((f"t{i + 1:03d}", Scene(layout, kind)))
    return scenes


def _fleet(n: int, ck: CrashKinds, base: Path) -> tuple[Rig, Path, dict[str, Path]]:
    """A rig of n hosts, each with a dump dir of its own under /var/crash (crashfleet_dump_dirs)."""
    rig = Rig(base / "rig", n, port=free_port(n), prefix="t", python=sys.executable)
    crash_root = Path(tempfile.mkdtemp(prefix="bench-triage-", dir="/var/crash"))
    dumps = {}
    for (_, scene), h in zip(_scenes(n), rig.hosts):
        dumps[h.name] = lay_out(scene, crash_root / h.name, ck) or crash_root / h.name
    return rig, crash_root, dumps


def _inventory(rig: Rig, crash_root: Path, path: Path) -> Path:
    doc = yaml.safe_load(rig.inventory.read_text())
    for name, hostvars in doc["all"]["children"]["t"]["hosts"].items():
        hostvars["crashfleet_dump_dirs"] = [str(crash_root / name)]
    path.write_text(yaml.safe_dump(doc))
    return path


def fleet(args: argparse.Namespace) -> None:
    ck = ensure_kinds()
    base = Path(tempfile.mkdtemp(prefix="bench-triage-fleet-"))
    base.chmod(0o755)
    rig, crash_root, _ = _fleet(args.hosts, ck, base)
    try:
        with rig:
            inventory = _inventory(rig, crash_root, base / "inventory.yml")
            server = StdioServer(
                LEGACY,
                rig,
                base / "home",
                CRASHFLEET_INVENTORY=str(inventory),
                CRASHFLEET_CALL_BUDGET=str(args.budget),
                CRASHFLEET_HOST_DEADLINE="300",
            )
            try:
                _measure(server)
            finally:
                server.close()
    finally:
        shutil.rmtree(crash_root, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def _measure(server: StdioServer) -> None:
    started = time.monotonic()
    answer = structured(server.call("crash_triage", {"pattern": "all"}, timeout=600))
    first = time.monotonic() - started
    done = answer["summary"]["total"] - answer["summary"]["running"]
    while answer.get("job_id") and answer["summary"]["running"]:
        time.sleep(0.5)
        answer = structured(server.call("job_status", {"job_id": answer["job_id"]}))
    complete = time.monotonic() - started
    titles = [(g["count"], (g.get("data") or {}).get("title")) for g in answer["groups"]]
    print(f"first answer {first:.1f} s ({done} of {answer['summary']['total']} hosts), complete {complete:.1f} s")
    print(f"{len(titles)} groups: {titles}")


def fleet_crash(args: argparse.Namespace) -> None:
    """The peer on the same dumps: crash's `log` on every host's dump, all at once (clush-like)."""
    ck = ensure_kinds()
    base = Path(tempfile.mkdtemp(prefix="bench-triage-peer-"))
    _, crash_root, dumps = _fleet(args.hosts, ck, base)
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=min(64, args.hosts)) as pool:
            list(pool.map(lambda dump: _crash(ck, dump), dumps.values()))
        print(f"crash log on {len(dumps)} dumps: {time.monotonic() - started:.1f} s")
    finally:
        shutil.rmtree(crash_root, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


def _crash(ck: CrashKinds, dump: Path) -> Any:
    if not dump.is_file():
        return None
    return subprocess.run(
        ["crash", "-s", "--no_crashrc", "--no_scroll", str(ck.vmlinux), str(dump)],
        input=b"log\nquit\n",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=os.path.dirname(dump),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    one = sub.add_parser("prepare")
    one.add_argument("--layout", default="elf", choices=("elf", "kdump-dmesg", "kdump"))
    one.add_argument("--kind", default="softlockup_a")
    one.add_argument("--dir", default="/var/tmp/bench-triage")
    one.set_defaults(func=prepare)
    asked = sub.add_parser("ask")
    asked.add_argument("--dir", default="/var/tmp/bench-triage")
    asked.set_defaults(func=ask)
    many = sub.add_parser("fleet")
    many.add_argument("--hosts", type=int, default=14)
    many.add_argument("--budget", type=float, default=40.0)
    many.set_defaults(func=fleet)
    peers = sub.add_parser("fleet-crash")
    peers.add_argument("--hosts", type=int, default=14)
    peers.set_defaults(func=fleet_crash)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
