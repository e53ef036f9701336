"""A small network of namespaces for capture tests, each capturing host reached over real SSH.

    root ns --mgmt veth (10.77.2NN.x/30, a free NN)--> app (10.77.1.2) --data--> router --data--> db (10.77.2.2, .3)

app and db run their own sshd on their management address; captures use their
`data0` interface, so the agent's own SSH traffic is never captured. Faults are
nftables tables added in a namespace and removed after. Everything is torn down
by namespace deletion and by pid (only processes this lab started).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.rig.files import keygen, pub, public_key, write_atomic
from tests.rig.procs import alive, terminate

SSHD = "/usr/sbin/sshd"
_LABS = itertools.count()  # a session may hold two labs (each test folder's fixture): names apart
HERE = Path(__file__).parent


@dataclass
class LabHost:
    name: str
    ns: str
    mgmt: str  # address sshd listens on, reachable from the root namespace
    data: str  # address on data0


def run(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done


def _free_mgmt_net() -> str:
    """A 10.77.N (N in 200..249) that no address of the root namespace uses yet."""
    used = run("ip", "-o", "-4", "addr", "show").stdout
    for octet in range(200, 250):
        if f" 10.77.{octet}." not in used:
            return f"10.77.{octet}"
    raise RuntimeError("no free 10.77.200-249 management network: are 50 labs up?")


class NetLab:
    def __init__(self, base: Path) -> None:
        tag = f"{os.getpid() % 10000}{next(_LABS) % 10}"
        self.base = base
        self.tag = tag
        self.router = f"cfr{tag}"
        self.mgmt_net = _free_mgmt_net()  # the root namespace is shared: another lab may be up
        self.hosts = {
            "app01": LabHost("app01", f"cfa{tag}", f"{self.mgmt_net}.2", "10.77.1.2"),
            "db01": LabHost("db01", f"cfb{tag}", f"{self.mgmt_net}.6", "10.77.2.2"),
        }
        self.port = 22
        self.procs: list[subprocess.Popen[bytes]] = []
        self.key = base / "id_ed25519"
        self.known_hosts = base / "known_hosts"
        self.inventory = base / "inventory.yml"

    # -- lifecycle ------------------------------------------------------------

    def up(self) -> NetLab:
        try:
            self._namespaces()
            self._sshd()
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        pids = [p.pid for p in self.procs if alive(p.pid)]
        for ns in self.namespaces():
            pids += [int(x) for x in run("ip", "netns", "pids", ns, check=False).stdout.split()]
        terminate(sorted(set(pids)), 3.0)
        for proc in self.procs:
            proc.poll()
        for ns in self.namespaces():
            run("ip", "netns", "del", ns, check=False)
        for i in (0, 1):
            run("ip", "link", "del", f"cfm{self.tag}{i}", check=False)
        from crashfleet.agent.capture import agent_capture_dir
        from crashfleet.agent.policy import DEFAULTS

        for h in self.hosts.values():  # the rings the lab's agents wrote
            shutil.rmtree(
                agent_capture_dir(DEFAULTS["capture_dir"], str(self.base / h.name / "agent")), ignore_errors=True
            )

    def namespaces(self) -> list[str]:
        return [self.router] + [h.ns for h in self.hosts.values()]

    def _namespaces(self) -> None:
        app, db = self.hosts["app01"], self.hosts["db01"]
        for ns in self.namespaces():
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        self._link(app.ns, "data0", f"{app.data}/24", self.router, "r1", "10.77.1.1/24")
        self._link(db.ns, "data0", f"{db.data}/24", self.router, "r2", "10.77.2.1/24")
        run("ip", "-n", db.ns, "addr", "add", "10.77.2.3/24", "dev", "data0")
        run("ip", "netns", "exec", self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        run("ip", "-n", app.ns, "route", "add", "default", "via", "10.77.1.1")
        run("ip", "-n", db.ns, "route", "add", "default", "via", "10.77.2.1")
        for i, host in enumerate((app, db)):  # management: root ns <-> host, a /30 each
            root_if = f"cfm{self.tag}{i}"
            run("ip", "link", "add", root_if, "type", "veth", "peer", "name", "mgmt0", "netns", host.ns)
            run("ip", "addr", "add", f"{self.mgmt_net}.{4 * i + 1}/30", "dev", root_if)
            run("ip", "link", "set", root_if, "up")
            run("ip", "-n", host.ns, "addr", "add", f"{host.mgmt}/30", "dev", "mgmt0")
            run("ip", "-n", host.ns, "link", "set", "mgmt0", "up")

    @staticmethod
    def _link(ns_a: str, if_a: str, addr_a: str, ns_b: str, if_b: str, addr_b: str) -> None:
        run("ip", "-n", ns_a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
        for ns, name, address in ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)):
            run("ip", "-n", ns, "addr", "add", address, "dev", name)
            run("ip", "-n", ns, "link", "set", name, "up")

    def _sshd(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        keys = [(self.key, "capture-lab")] + [(self.base / f"{h.name}_host_key", h.name) for h in self.hosts.values()]
        keygen(keys)
        authorized = self.base / "authorized_keys"
        write_atomic(authorized, pub(self.key).read_text())
        entries, known = {}, []
        for h in self.hosts.values():
            hdir = self.base / h.name
            (hdir / "agent").mkdir(parents=True, exist_ok=True)
            config = hdir / "sshd_config"
            write_atomic(
                config,
                "\n".join(
                    [
                        f"ListenAddress {h.mgmt}:{self.port}",
                        f"HostKey {self.base / f'{h.name}_host_key'}",
                        f"PidFile {hdir / 'sshd.pid'}",
                        "UsePAM no",
                        "PermitRootLogin prohibit-password",
                        "PasswordAuthentication no",
                        "KbdInteractiveAuthentication no",
                        f"AuthorizedKeysFile {authorized}",
                        "StrictModes no",
                        "MaxStartups 100",
                        "Subsystem sftp internal-sftp",
                        "LogLevel ERROR",
                        "UseDNS no",
                    ]
                )
                + "\n",
            )
            self.procs.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", h.ns, SSHD, "-D", "-f", str(config), "-E", str(hdir / "sshd.log")],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
            known.append(f"{h.mgmt} {public_key(self.base / f'{h.name}_host_key')}\n")
            entries[h.name] = {
                "ansible_host": h.mgmt,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(self.key),
                "crashfleet_agent_dir": str(hdir / "agent"),
            }
        write_atomic(self.known_hosts, "".join(known))
        write_atomic(self.inventory, yaml.safe_dump({"all": {"children": {"lab": {"hosts": entries}}}}))
        self._await_sshd()

    def _await_sshd(self, timeout: float = 20.0) -> None:
        import socket

        deadline = time.monotonic() + timeout
        for h in self.hosts.values():
            while True:
                try:
                    with socket.create_connection((h.mgmt, self.port), timeout=2) as sock:
                        if sock.recv(64).startswith(b"SSH-2.0"):
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd in {h.ns} did not start: {(self.base / h.name / 'sshd.log')}")
                time.sleep(0.05)

    # -- traffic and faults -----------------------------------------------------

    def ns(self, host: str) -> str:
        return self.router if host == "router" else self.hosts[host].ns

    def spawn(self, host: str, *argv: str) -> subprocess.Popen[bytes]:
        """A long-running process inside a namespace (servers); stopped by down()."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns(host), *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def exec(self, host: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", self.ns(host), *argv, check=False, timeout=timeout)

    def nft(self, host: str, rules: str) -> None:
        """Load a ruleset (its own table) in a namespace; remove it with nft_clear."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns(host), "nft", "-f", "-"],
            input=rules,
            capture_output=True,
            text=True,
            timeout=20,
        )
        if done.returncode != 0:
            raise RuntimeError(f"nft failed in {host}: {done.stderr}")

    def nft_clear(self, host: str, table: str = "inet fault") -> None:
        self.exec(host, "nft", "delete", "table", *table.split())

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def environment_problem() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft", "tcpdump", "curl", SSHD):
        if shutil.which(tool) is None and not os.access(tool, os.X_OK):
            return f"{tool} is missing (./dev test installs it)"
    return None
