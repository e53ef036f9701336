"""CLI for running the sshd rig by hand, e.g. for benchmarks.

python -m tests.rig up 50 --dir /tmp/crashfleet-rig
python -m tests.rig status --dir /tmp/crashfleet-rig
python -m tests.rig pause web03 --dir /tmp/crashfleet-rig
python -m tests.rig down --dir /tmp/crashfleet-rig
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

from .files import RigError
from .rig import Rig, environment_problem

DEFAULT_DIR = Path("/tmp/crashfleet-rig")
HOST_ACTIONS: dict[str, Callable[[Rig, str], None]] = {
    "stop": Rig.stop_host,
    "start": Rig.start_host,
    "pause": Rig.pause_host,
    "resume": Rig.resume_host,
    "rekey": Rig.rekey_host,
    "restore": Rig.restore_host_key,
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.rig", description=(__doc__ or "").strip().split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start N sshd hosts (no-op when already running)")
    up.add_argument("n", type=int)
    up.add_argument("--port", type=int, default=2222)
    up.add_argument("--prefix", default="web")
    up.add_argument("--timeout", type=float, default=30.0, help="readiness timeout, seconds")
    sub.add_parser("down", help="stop the rig's sshd processes")
    sub.add_parser("status", help="show each host's state (exit 1 unless all are up)")
    for action in HOST_ACTIONS:
        sub.add_parser(action, help=f"{action} one host").add_argument("host")
    for sp in sub.choices.values():
        sp.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"default {DEFAULT_DIR}")
    return p


def _print_usage_info(rig: Rig) -> None:
    """Tell the user where the files are and what to export."""
    first, last = rig.hosts[0], rig.hosts[-1]
    print(f"hosts:       {first.name}..{last.name} on {first.address}..{last.address} port {rig.port}")
    print(f"inventory:   {rig.inventory}")
    print(f"known_hosts: {rig.known_hosts}")
    print(f"client key:  {rig.client_key}")
    print(
        f"export CRASHFLEET_INVENTORY={shlex.quote(str(rig.inventory))} "
        f"CRASHFLEET_SSH_KNOWN_HOSTS={shlex.quote(str(rig.known_hosts))}"
    )


def _load(base: Path) -> Rig | None:
    """The rig recorded in base, or None."""
    try:
        return Rig.load(base)
    except RigError:
        return None


def cmd_up(args: argparse.Namespace) -> int:
    existing = _load(args.dir)
    if existing and all(existing.is_running(h) for h in existing.hosts):
        same = (existing.n, existing.port, existing.prefix) == (args.n, args.port, args.prefix)
        note = "" if same else " (with different settings: run down first to change them)"
        print(f"rig already running: {existing.n} hosts in {existing.base}{note}")
        _print_usage_info(existing)
        return 0 if same else 1
    rig = Rig(args.dir, args.n, args.port, args.prefix)
    rig.ready_timeout = args.timeout
    already = sum(existing.is_running(h) for h in existing.hosts) if existing else 0
    t0 = time.monotonic()
    rig.up()
    took = time.monotonic() - t0
    print(f"rig up: started {rig.n - already} of {rig.n} hosts in {took:.2f} s ({rig.state_file})")
    _print_usage_info(rig)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    rig = _load(args.dir)
    if rig is None:
        print(f"no rig in {args.dir}: nothing to stop")
        return 0
    running = sum(rig.is_running(h) for h in rig.hosts)
    t0 = time.monotonic()
    rig.down()
    print(f"rig down: stopped {running} sshd listeners in {time.monotonic() - t0:.2f} s")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    rig = _load(args.dir)
    if rig is None:
        print(f"no rig in {args.dir}")
        return 3
    states = {h.name: rig.state(h) for h in rig.hosts}
    for h in rig.hosts:
        print(f"{h.name:8} {h.address}:{h.port:<6} {states[h.name]:7} pid={h.pid or '-'}")
    up = sum(s == "up" for s in states.values())
    print(f"{up}/{rig.n} up")
    return 0 if up == rig.n else 1


def cmd_host(args: argparse.Namespace) -> int:
    rig = _load(args.dir)
    if rig is None:
        print(f"no rig in {args.dir}", file=sys.stderr)
        return 3
    HOST_ACTIONS[args.cmd](rig, args.host)
    print(f"{args.host}: {rig.state(rig.host(args.host))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    problem = environment_problem()
    if problem:
        print(f"tests.rig: {problem}", file=sys.stderr)
        return 2
    handler = {"up": cmd_up, "down": cmd_down, "status": cmd_status}.get(args.cmd, cmd_host)
    try:
        return handler(args)
    except (RigError, KeyError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"tests.rig: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
