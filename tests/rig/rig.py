"""A fleet of real OpenSSH sshd "hosts", one listener per 127.0.0.N address.

Each host is `/usr/sbin/sshd -D -f <config> -E <log>` in its own session: -D
keeps the Popen pid equal to the listener pid, and the new session lets the
listeners outlive the process that started them (`python -m tests.rig up`) so
`down` from another process can find them again through rig.json.
"""

from __future__ import annotations

import json
import os
import pwd
import random
import signal
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from . import procs
from .files import (
    SSH_KEYGEN,
    RigError,
    keygen,
    log_tail,
    pub,
    render_inventory,
    render_known_hosts,
    render_sshd_config,
    write_atomic,
)
from .namespace import isolated_argv
from .ready import Target, wait_ready

SSHD = Path("/usr/sbin/sshd")  # absolute: sshd re-execs itself for every connection
PRIVSEP_DIR = Path("/run/sshd")
MAX_HOSTS = 1000
ADDRESS_OFFSET = 10  # host i (1-based) listens on 127.0.0.(10 + i): web01 -> 127.0.0.11
PER_BLOCK = 200  # ... up to i = 200; then 127.0.1.11 and on, 200 a block
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
READY_TIMEOUT = 30.0
FAILURES_SHOWN = 8  # hosts named in a start-up error
LOGS_SHOWN = 2  # of which the sshd log tail is quoted
OWN_KEYS_USERS = ("crashfleet",)  # on isolated hosts: only their own authorized_keys, not the rig key


@dataclass
class RigHost:
    """One simulated host: its listener address and the files under base/hosts/<name>/."""

    name: str
    address: str
    port: int
    dir: Path
    agent_dir: Path
    pid: int | None = None

    @property
    def config(self) -> Path:
        return self.dir / "sshd_config"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def saved_key(self) -> Path:
        """Where the original host key waits while the host is rekeyed."""
        return self.dir / "ssh_host_ed25519_key.orig"

    @property
    def original_key(self) -> Path:
        return self.saved_key if self.saved_key.exists() else self.host_key

    @property
    def pid_file(self) -> Path:
        return self.dir / "sshd.pid"

    @property
    def log(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def ns_dir(self) -> Path:
        """Upper layers of an isolated host's overlays (see tests.rig.namespace)."""
        return self.dir / "ns"


def environment_problem() -> str | None:
    """Why the rig cannot run here (for CLI errors and pytest skips), or None."""
    if os.geteuid() != 0:
        return "the sshd rig needs root (sshd switches users and needs /run/sshd)"
    for tool in (SSHD, Path(SSH_KEYGEN)):
        if not os.access(tool, os.X_OK):
            return f"{tool} not found: install openssh-server / openssh-client"
    return None


def current_user() -> str:
    """Login name for ansible_user: the rig's authorized_keys is accepted for any user."""
    return pwd.getpwuid(os.geteuid()).pw_name


def address_of(i: int) -> str:
    """Loopback address of host i (1-based)."""
    block, offset = divmod(i - 1, PER_BLOCK)
    return f"127.0.{block}.{ADDRESS_OFFSET + 1 + offset}"


def free_port(n: int, tries: int = 200) -> int:
    """A port free on every address of an n-host rig, so a test rig can run beside one on 2222."""
    for _ in range(tries):
        port = random.randint(20000, 59999)  # below the default ephemeral range
        if all(_bindable(address_of(i), port) for i in range(1, n + 1)):
            return port
    raise RigError(f"no free port for {n} rig hosts after {tries} tries")


def _bindable(address: str, port: int) -> bool:
    """True when nothing listens on address:port (SO_REUSEADDR like sshd: TIME_WAIT is fine)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            return False
    return True


class Rig:
    """N sshd hosts under base; see the package docstring for the layout."""

    def __init__(
        self,
        base: Path,
        n: int,
        port: int = 2222,
        prefix: str = "web",
        isolated: bool = False,
        python: str | None = None,
    ) -> None:
        if not 1 <= n <= MAX_HOSTS:
            raise ValueError(f"n must be 1..{MAX_HOSTS}, got {n}")
        if not prefix.isidentifier():
            raise ValueError(f"prefix must be an identifier (it names an Ansible group): {prefix!r}")
        self.base = Path(base).absolute()  # absolute: embedded in sshd_config and matched in /proc
        self.n, self.port, self.prefix = n, port, prefix
        self.isolated = isolated  # each sshd in its own mount namespace (tests.rig.namespace)
        self.python = python  # ansible_python_interpreter of every host (None: python3 from PATH)
        self.hosts = [self._make_host(i) for i in range(1, n + 1)]
        self.client_key = self.base / "id_ed25519"
        self.known_hosts = self.base / "known_hosts"
        self.inventory = self.base / "inventory.yml"
        self.authorized_keys = self.base / "authorized_keys"
        self.state_file = self.base / "rig.json"
        self.ready_timeout = READY_TIMEOUT
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def _make_host(self, i: int) -> RigHost:
        name = f"{self.prefix}{i:0{3 if self.n > 99 else 2}d}"
        hdir = self.base / "hosts" / name
        return RigHost(name, address_of(i), self.port, hdir, hdir / "agent")

    # -- public API ---------------------------------------------------------

    def host(self, name: str) -> RigHost:
        """Look a host up by name."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(f"no host {name!r} in rig {self.base}")

    def up(self) -> Rig:
        """Write keys and configs, start every sshd not yet running, wait for all banners."""
        problem = environment_problem()
        if problem:
            raise RigError(problem)
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        self._adopt()
        todo = [h for h in self.hosts if not self.is_running(h)]
        busy = [f"{h.address}:{h.port}" for h in todo if not _bindable(h.address, h.port)]
        if busy:
            raise RigError(f"already in use (another rig or sshd?): {', '.join(busy[:8])}")
        self._prepare(todo)
        self._start(todo)
        self._await(todo)
        return self

    def down(self) -> None:
        """Stop every listener this rig started plus its sessions (sshd children, their commands)."""
        self._stop(self.hosts)

    def stop_host(self, name: str, drop_sessions: bool = True) -> None:
        """Host down: connects are refused; its sessions and their commands are killed too
        unless drop_sessions is False (then it is a plain sshd restart-style stop)."""
        self._stop([self.host(name)], drop_sessions)

    def start_host(self, name: str) -> None:
        """Bring a stopped host back (no-op when it runs)."""
        h = self.host(name)
        if not self.is_running(h):
            self._start([h])
            self._await([h])

    def pause_host(self, name: str) -> None:
        """Host hung: SIGSTOP the listener (TCP connects via the backlog, no banner) and
        everything below it, so established sessions freeze too."""
        listener = self._listener_tree(self.host(name))[0]
        for pids in ([listener], procs.descendants([listener])):  # a stopped listener forks no more
            procs.send(pids, signal.SIGSTOP)
            procs.wait_state(pids, "T")

    def resume_host(self, name: str) -> None:
        """Undo pause_host."""
        procs.send(reversed(self._listener_tree(self.host(name))), signal.SIGCONT)

    def rekey_host(self, name: str) -> None:
        """Give the host a new key (known_hosts keeps the old one -> clients see a mismatch)."""
        h = self.host(name)
        if not h.saved_key.exists():
            h.host_key.rename(h.saved_key)
            pub(h.host_key).rename(pub(h.saved_key))
        keygen([(h.host_key, f"root@{h.name}-rekeyed")])
        self._restart(h)

    def restore_host_key(self, name: str) -> None:
        """Put the original host key back and restart the host."""
        h = self.host(name)
        if h.saved_key.exists():
            os.replace(h.saved_key, h.host_key)
            os.replace(pub(h.saved_key), pub(h.host_key))
        self._restart(h)

    def state(self, h: RigHost) -> str:
        """'up', 'paused' (SIGSTOPped listener) or 'down'."""
        if not self.is_running(h):
            return "down"
        return "paused" if h.pid is not None and procs.state(h.pid) == "T" else "up"

    def is_running(self, h: RigHost) -> bool:
        """True when the recorded pid is alive and still the sshd of this host's config."""
        return h.pid is not None and procs.runs_config(h.pid, h.config)

    @classmethod
    def load(cls, base: Path) -> Rig:
        """Re-attach to a rig started elsewhere (e.g. by the CLI) from base/rig.json."""
        data = _read_state(Path(base).absolute() / "rig.json")
        if data is None:
            raise RigError(f"no rig at {base} (missing or unreadable rig.json)")
        rig = cls(
            Path(data["base"]),
            int(data["n"]),
            int(data["port"]),
            str(data["prefix"]),
            bool(data.get("isolated", False)),
        )
        rig._apply_pids(data)
        return rig

    def __enter__(self) -> Rig:
        return self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    # -- files --------------------------------------------------------------

    def _prepare(self, starting: list[RigHost]) -> None:
        """Create dirs and missing keys; (re)write configs, authorized_keys, known_hosts, inventory."""
        for h in self.hosts:
            h.agent_dir.mkdir(parents=True, exist_ok=True)
        for h in starting:  # a host left rekeyed by an earlier run starts with its own key again
            if h.saved_key.exists():
                os.replace(h.saved_key, h.host_key)
                os.replace(pub(h.saved_key), pub(h.host_key))
        wanted = [(self.client_key, f"crashfleet-rig@{self.base}")] + [
            (h.host_key, f"root@{h.name}") for h in self.hosts
        ]
        keygen([(k, c) for k, c in wanted if not (k.exists() and pub(k).exists())])
        write_atomic(self.authorized_keys, pub(self.client_key).read_text())
        for h in starting:
            write_atomic(h.config, render_sshd_config(h, self.authorized_keys, OWN_KEYS_USERS if self.isolated else ()))
        write_atomic(self.known_hosts, render_known_hosts(self.hosts))
        write_atomic(
            self.inventory,
            render_inventory(self.hosts, self.prefix, current_user(), self.client_key, self.python),
        )

    def _save(self) -> None:
        """Record pids and paths in rig.json so another process can load() and stop the rig."""
        data = {
            "base": str(self.base),
            "n": self.n,
            "port": self.port,
            "prefix": self.prefix,
            "isolated": self.isolated,
            "client_key": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "inventory": str(self.inventory),
            "hosts": [
                {
                    "name": h.name,
                    "address": h.address,
                    "port": h.port,
                    "pid": h.pid,
                    "config": str(h.config),
                    "log": str(h.log),
                    "agent_dir": str(h.agent_dir),
                }
                for h in self.hosts
            ],
        }
        self.base.mkdir(parents=True, exist_ok=True)
        write_atomic(self.state_file, json.dumps(data, indent=1) + "\n")

    def _apply_pids(self, data: dict[str, Any]) -> None:
        """Take pids recorded in rig.json for hosts of this rig."""
        pids = {e["name"]: e.get("pid") for e in data.get("hosts", [])}
        for h in self.hosts:
            h.pid = pids.get(h.name) if h.pid is None else h.pid

    def _adopt(self) -> None:
        """Re-use listeners recorded in rig.json; refuse if a differently shaped rig runs there."""
        data = _read_state(self.state_file)
        if data is None:
            return
        ours = {(h.name, str(h.config)) for h in self.hosts}
        for e in data.get("hosts", []):
            pid, config = e.get("pid"), Path(e["config"])
            foreign = (e["name"], str(config)) not in ours or e.get("port") != self.port
            if pid and foreign and procs.runs_config(int(pid), config):
                raise RigError(
                    f"a different rig ({data['n']} hosts, port {data['port']}) runs in {self.base}; run down first"
                )
        self._apply_pids(data)

    # -- processes ----------------------------------------------------------

    def _start(self, hosts: list[RigHost]) -> None:
        """Launch the listeners without waiting for each; record their pids."""
        for h in hosts:
            h.pid_file.unlink(missing_ok=True)
            argv = [str(SSHD), "-D", "-f", str(h.config), "-E", str(h.log)]
            if self.isolated:
                argv = isolated_argv(h.ns_dir, argv)
            with h.log.open("ab") as log:  # early errors (bad config) go to stderr, not -E
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    start_new_session=True,
                )
            self._procs[h.name] = proc
            h.pid = proc.pid
        self._save()

    def _await(self, hosts: list[RigHost]) -> None:
        """Wait for every banner; on failure stop what was started and report the log tails.

        A banner alone proves nothing if another sshd holds the address (our sshd
        then exits on bind), so the listening socket must belong to our pid too.
        """
        targets = [Target(h.name, h.address, h.port, self._exit_check(h)) for h in hosts]
        failed = wait_ready(targets, self.ready_timeout)
        failed.update(self._foreign_listeners([h for h in hosts if h.name not in failed]))
        if not failed:
            return
        self._stop(hosts)
        raise RigError(self._failure_report(failed))

    def _foreign_listeners(self, hosts: list[RigHost]) -> dict[str, str]:
        """Hosts whose address:port is not served by the sshd we started."""
        listening = procs.listening_sockets()
        foreign: dict[str, str] = {}
        for h in hosts:
            inode = listening.get((h.address, h.port))
            if h.pid is None or inode not in procs.socket_inodes(h.pid):
                foreign[h.name] = "address served by another process (another rig?)"
        return foreign

    def _exit_check(self, h: RigHost) -> Callable[[], str | None]:
        """Return a callable saying why h's sshd died, or None while it lives."""

        def check() -> str | None:
            proc = self._procs.get(h.name)
            if proc is not None and proc.poll() is not None:
                return f"sshd exited with status {proc.returncode}"
            if proc is None and h.pid is not None and not procs.alive(h.pid):
                return "sshd exited"
            return None

        return check

    def _failure_report(self, failed: dict[str, str]) -> str:
        """Name the failed hosts and show log tails of the first few."""
        lines = [f"{len(failed)} of {self.n} rig hosts failed to start:"]
        for i, (name, reason) in enumerate(sorted(failed.items())):
            h = self.host(name)
            if i == FAILURES_SHOWN:
                lines.append(f"  ... and {len(failed) - i} more")
                break
            lines.append(f"  {name} {h.address}:{h.port}: {reason}")
            if i < LOGS_SHOWN:
                lines.append(f"    log {h.log}:")
                lines.extend(f"      {ln}" for ln in log_tail(h.log).splitlines())
        return "\n".join(lines)

    def _listener_tree(self, h: RigHost) -> list[int]:
        """The verified listener pid followed by its sessions' processes."""
        if not self.is_running(h) or h.pid is None:
            raise RigError(f"{h.name} is not running")
        return [h.pid, *procs.descendants([h.pid])]

    def _stop(self, hosts: list[RigHost], drop_sessions: bool = True) -> None:
        """Terminate the hosts' listeners (and sessions) together; SIGKILL after STOP_GRACE."""
        live = [h.pid for h in hosts if self.is_running(h) and h.pid is not None]
        children = procs.descendants(live) if drop_sessions and live else []
        survivors = procs.terminate(live + children, STOP_GRACE)
        for h in hosts:
            self._reap(h)
            h.pid = None
        self._save()
        if survivors:
            raise RigError(f"sshd processes survived SIGKILL: {survivors}")

    def _reap(self, h: RigHost) -> None:
        """Collect the exit status of a listener we spawned so it does not linger as a zombie."""
        proc = self._procs.pop(h.name, None)
        if proc is not None:
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                self._procs[h.name] = proc

    def _restart(self, h: RigHost) -> None:
        """Stop (if running) and start one host, waiting for its banner."""
        self._stop([h])
        self._start([h])
        self._await([h])


def _read_state(path: Path) -> dict[str, Any] | None:
    """Parse rig.json; None when absent or damaged (a fresh `up` then starts over)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
