"""`python3 crashfleet-agent.pyz serve --dir DIR`: the agent's entry point."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import List, Optional

from . import domains, protocol
from . import policy as policy_mod
from .audit import FILENAME as AUDIT_FILE
from .audit import RefusalLog
from .buildinfo import build_hash
from .errors import AgentError
from .jobs import JobManager
from .launcher import dir_problem
from .lease import Lifeline
from .reattach import Reattach
from .rpc import Channel, Server
from .service import Agent
from .store import Store

ANSWER_GRACE = 10.0  # seconds the requests in flight at stdin's end still get to answer
# What the agent itself needs; each domain adds its own (agent/domains/*.py).
CORE_PACKAGES = {"Debian": ["python3", "sudo"], "RedHat": ["python3", "sudo"]}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="crashfleet-agent")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="speak JSON-RPC on stdin/stdout")
    serve.add_argument("--dir", default="~/.cache/crashfleet", help="agent dir (store lives in DIR/store)")
    serve.add_argument("--policy", default=None, help="policy file (default %s)" % policy_mod.DEFAULT_PATH)
    sub.add_parser("version", help="print the build hash")
    packages = sub.add_parser("packages", help="print the packages the domains need, as JSON (the role installs them)")
    packages.add_argument("--family", required=True, help="OS family, as Ansible names it: Debian, RedHat")
    args = parser.parse_args(argv)
    if args.cmd == "version":
        print(build_hash())
        return 0
    if args.cmd == "packages":
        print(json.dumps(CORE_PACKAGES.get(args.family, []) + domains.packages(args.family)))
        return 0
    try:
        status = serve_forever(os.path.abspath(os.path.expanduser(args.dir)), args.policy)
    except AgentError as exc:
        sys.stderr.write("crashfleet-agent: %s\n" % exc.message)
        return 2
    # Everything is stopped and written. A superseded connection's reader thread may still block
    # on stdin: a normal interpreter exit would then abort ("could not acquire lock for <stdin>
    # at interpreter shutdown"), turning a clean end into a crash. Leave without that exit.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def serve_forever(base_dir: str, policy_path: Optional[str]) -> int:
    """Serve until stdin closes, then stop every child: nothing outlives us."""
    policy = policy_mod.load(policy_path)
    check_base_dir(base_dir)
    os.makedirs(base_dir, mode=0o700, exist_ok=True)
    check_base_dir(base_dir)  # again: makedirs gives the dirs above DIR the umask's mode
    workdir = os.path.join(base_dir, "work")  # empty cwd for every child
    os.makedirs(workdir, mode=0o700, exist_ok=True)
    store = Store(
        os.path.join(base_dir, "store"),
        max_output_bytes=policy.settings["max_output_bytes"],
        max_total_bytes=policy.settings["max_store_bytes"],
    )
    stdout = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the wire
    channel = Channel(stdout)
    jobs = JobManager(
        store,
        channel.notify,
        workdir,
        max_jobs=int(policy.settings["max_jobs"]),
        table=os.path.join(base_dir, "jobs.json"),
    )
    server = Server(channel, refusals=RefusalLog(os.path.join(base_dir, AUDIT_FILE)))
    lifeline = Lifeline(float(policy.settings["job_lease"]), jobs.running)
    agent = Agent(base_dir, store, jobs, policy)
    agent.lifeline = lifeline
    for name, handler in agent.core_methods().items():
        server.register(name, handler)
    server.more_methods = agent.domain_methods
    server.register(protocol.SHUTDOWN, lifeline.release)
    reattach = Reattach(base_dir, server, channel, lifeline)
    server.intercept = reattach.intercept
    _on_signals(jobs, channel)
    why = "stdin closed"
    try:
        reattach.serve_stream(sys.stdin.buffer)
        why = lifeline.wait()
    finally:
        jobs.shutdown("the agent stopped: %s" % why)
        reattach.close()
        server.stop(grace=ANSWER_GRACE)
    return 0


def check_base_dir(base_dir: str) -> None:
    """As root, refuse a base dir another user could write: its store, worker scripts and
    captures would be theirs to plant (see launcher.dir_problem for the rule)."""
    if os.geteuid() != 0:
        return
    problem = dir_problem(base_dir)
    if problem:
        raise AgentError(
            protocol.UNSAFE_DIR,
            "refusing agent dir %s: %s" % (base_dir, problem),
            rule="agent.dir",
            hint="use a dir only root can write (chown root:root, chmod go-w on it and above)",
        )


def _on_signals(jobs: JobManager, channel: Channel) -> None:
    def stop(signum: int, _frame: object) -> None:
        # Said first, so the controller knows before any answer the shutdown causes
        # that this agent takes no more calls.
        channel.notify(protocol.AGENT_STOPPING, {"signal": signum})
        sys.stderr.write(
            "crashfleet-agent: stopping on signal %d, killing %d job(s)\n"
            % (signum, sum(1 for j in jobs.jobs.values() if j.state == "running"))
        )
        sys.stderr.flush()
        jobs.shutdown("the agent was stopped by signal %d" % signum)
        os._exit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, stop)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
