"""Packet capture: tcpdump as a job with a fixed argv, and summaries computed here, on the target.

Security floor: argv lists only; `-Z` to an unprivileged user (tcpdump drops root once
the device is open); no `-z`; a ring of files (`-C`/`-W`) caps the disk; a headers-only
snaplen by default; the filter goes after `--` and is compiled (`tcpdump -d`) first.
Quotas (policy): max_captures running at once, and capture_total_bytes for the running rings
plus the kept captures (the oldest kept ones are deleted first to make room), per agent process.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import profiles, protocol, sandbox
from .errors import AgentError, bad_params
from .jobs import Job, _clean_env
from .params import bounded, param
from .pcap import lines as pcap_lines
from .pcap import reader, report
from .pcap import summary as pcap_summary

SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SNAPLEN = 320  # headers plus the first payload bytes: HTTP request line and Host, DNS, TLS SNI
RING_FILES = 4
PREFIX = "ring.pcap"
WEB_PORTS = (80, 443, 8080, 8443)
DIAGNOSIS = "icmp or icmp6 or port 53 or (tcp[tcpflags] & (tcp-syn|tcp-fin|tcp-rst) != 0)"
MODES = ("auto", "host", "port", "web", "dns", "diagnosis", "custom")
WATCH_EVERY = 0.5
NAME_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})\Z")
INSTALL_HINT = "install the tcpdump package (apt-get install tcpdump, or dnf/yum install tcpdump)"


class Capture:
    """One capture: its job, the ring's directory, and what it was asked for."""

    def __init__(self, job: Job, directory: str, meta: Dict[str, Any]) -> None:
        self.job = job
        self.dir = directory
        self.meta = meta
        self.cache: Dict[Tuple[Any, ...], Any] = {}

    def files(self) -> List[str]:
        return reader.ring_files(self.dir, PREFIX)

    def records(self) -> Any:
        return reader.records(self.files())

    def disk_bytes(self) -> int:
        return sum(os.path.getsize(f) for f in self.files())


class CaptureService:
    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.captures: Dict[str, Capture] = {}
        self._lock = threading.Lock()
        self._start_lock = threading.Lock()  # one start at a time: quotas and pruning see every capture

    @property
    def settings(self) -> Dict[str, Any]:
        return self.agent.policy.settings  # type: ignore[no-any-return]

    # -- RPC methods --------------------------------------------------------

    def interfaces(self, params: Dict[str, Any]) -> Dict[str, Any]:
        return {"interfaces": list_interfaces()}

    def start(self, params: Dict[str, Any]) -> Dict[str, Any]:
        tcpdump = shutil.which("tcpdump", path=SBIN_PATH)
        if tcpdump is None:
            raise AgentError(protocol.NO_TCPDUMP, "tcpdump is not installed on this host", hint=INSTALL_HINT)
        if os.geteuid() != 0:
            raise AgentError(
                protocol.NOT_ROOT,
                "capturing needs root; the agent runs as uid %d" % os.geteuid(),
                hint="set ansible_become for this host",
            )
        duration = self.agent.policy.check_duration(float(param(params, "duration", (int, float), 30)))
        iface = self._interface(param(params, "interface", str, None))
        expression, mode = build_filter(
            param(params, "mode", str, "auto"), param(params, "target", str, None), param(params, "filter", str, None)
        )
        snaplen = int(bounded(params, "snaplen", DEFAULT_SNAPLEN, 64, 262144))
        max_packets = param(params, "max_packets", int, None)
        if max_packets is not None and not 1 <= max_packets <= 100000000:
            raise bad_params("max_packets must be between 1 and 100000000, got %s" % max_packets)
        ring_cap = int(self.settings["capture_ring_bytes"])
        ring_bytes = int(bounded(params, "ring_bytes", ring_cap, 4000000, max(ring_cap, 4000000)))
        file_mb = max(1, ring_bytes // RING_FILES // 1000000)
        ring = file_mb * RING_FILES * 1000000
        user = self._user()
        self._admit(ring)  # before tcpdump -d runs; checked again where it counts, under the start lock
        compile_filter(
            tcpdump,
            iface,
            snaplen,
            expression,
            sandbox.child_setup(self.settings, profiles.tcpdump(self.agent.policy, ""), tcpdump),
        )
        meta = {
            "interface": iface,
            "mode": mode,
            "filter": expression,
            "snaplen": snaplen,
            "duration": duration,
            "max_packets": max_packets,
            "ring_bytes": ring,
            "user": user,
        }
        with self._start_lock:
            self._admit(ring)
            directory = self._new_dir(user, ring)
            argv = [
                tcpdump,
                "-n",
                "-i",
                iface,
                "-s",
                str(snaplen),
                "-U",
                "-w",
                os.path.join(directory, PREFIX),
                "-C",
                str(file_mb),
                "-W",
                str(RING_FILES),
                "-Z",
                user,
            ]
            if max_packets:
                argv += ["-c", str(max_packets)]
            if expression:
                argv += ["--", expression]
            try:
                profile = profiles.tcpdump(self.agent.policy, directory, duration, file_mb * 1000000)
                job = self.agent.jobs.start(
                    "capture",
                    argv,
                    duration=duration,
                    meta=meta,
                    preexec=sandbox.child_setup(self.settings, profile, tcpdump),
                )
            except AgentError:
                shutil.rmtree(directory, ignore_errors=True)
                raise
            capture = Capture(job, directory, meta)
            with self._lock:
                self.captures[job.id] = capture
        threading.Thread(target=self._watch_disk, args=(capture,), daemon=True).start()
        return self.status(dict(params, job_id=job.id))

    def status(self, params: Dict[str, Any]) -> Dict[str, Any]:
        capture = self._get(params)
        self.agent.jobs.wait(capture.job, bounded(params, "wait", 0.0, 0.0, 120.0))
        job = capture.job
        status = job.status()
        status.pop("stderr_tail", None)
        if not job.done.is_set():  # a stopping job says "done" before tcpdump has flushed and exited
            status["state"] = "running"
        status["stop_reason"] = job.stop_reason
        stats = tcpdump_stats(job.stderr_tail())
        status.update(meta=capture.meta, files=len(capture.files()), disk_bytes=capture.disk_bytes(), **stats)
        status["listening"] = "listening on" in job.stderr_tail()  # tcpdump has the device open: packets count
        if job.done.is_set():
            status["stderr_tail"] = job.stderr_tail()[-600:]
        if job.state == "failed" and not capture.files():
            status["error"] = _tcpdump_error(job.stderr_tail())
        return status

    def summary(self, params: Dict[str, Any]) -> Dict[str, Any]:
        capture = self._get(params)
        tokens = int(bounded(params, "max_tokens", report.DEFAULT_TOKENS, 200, 20000))
        started = time.monotonic()
        s = self._summariser(capture)
        extra = {
            "host": socket.gethostname(),
            "state": capture.job.state,
            "interface": capture.meta["interface"],
            "filter": capture.meta["filter"] or "(none)",
        }
        stats = tcpdump_stats(capture.job.stderr_tail())
        if stats.get("dropped_by_kernel"):
            extra["dropped_by_kernel"] = stats["dropped_by_kernel"]
        if capture.job.stop_reason and capture.job.stop_reason.startswith("disk"):
            extra["stopped"] = capture.job.stop_reason
        out = report.build(s, tokens, extra)
        out["took_s"] = round(time.monotonic() - started, 3)
        return out

    def flows(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """Per-conversation counts by direction, and this host's addresses: to correlate hosts."""
        capture = self._get(params)
        limit = int(bounded(params, "limit", 500, 1, 5000))
        summariser = self._summariser(capture)
        return {
            "addresses": local_addresses(),
            "flows": pcap_summary.flows(summariser, limit),
            "window": pcap_summary.window(summariser),
        }

    def fingerprints(self, params: Dict[str, Any]) -> Dict[str, Any]:
        capture = self._get(params)
        proto, src, sport, dst, dport = parse_flow(param(params, "flow", str))
        limit = int(bounded(params, "limit", 20000, 1, 100000))
        found = pcap_lines.fingerprints(capture.records(), proto, src, sport, dst, dport, limit)
        return {"packets": found}

    def packets(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """Header-only lines of the matching packets, written once to the store, then paged."""
        capture = self._get(params)
        text = param(params, "filter", str, "") or ""
        try:
            tests = pcap_lines.parse_filter(text)
        except pcap_lines.FilterError as exc:
            raise bad_params(str(exc), hint="terms: c12, an IP address, port 80, tcp/udp/icmp, #120, 100-200") from None
        key = ("packets", text, len(capture.files()), capture.disk_bytes())
        output_id = capture.cache.get(key)
        if output_id is None:
            writer = self.agent.store.create("capture-packets", {"job_id": capture.job.id, "filter": text})
            for line in pcap_lines.lines(capture.records(), tests):
                writer.write(line.encode())
            writer.close(exit_status=0)
            output_id = capture.cache[key] = writer.output_id
        page = self.agent.store_call(
            lambda: self.agent.store.page(
                output_id,
                param(params, "cursor", str, None),
                max_bytes=bounded(params, "max_bytes", 16000, 256, 100000),
            )
        )
        return dict(page, output_id=output_id)

    # -- helpers ------------------------------------------------------------

    def _get(self, params: Dict[str, Any]) -> Capture:
        job_id = param(params, "job_id", str)
        capture = self.captures.get(job_id)
        if capture is None:
            raise AgentError(
                protocol.UNKNOWN_JOB,
                "no capture %r on this host" % job_id,
                hint="known captures: %s" % (", ".join(self.captures) or "none"),
            )
        return capture

    def _summariser(self, capture: Capture) -> pcap_summary.Summariser:
        """One pass per capture once it has finished; a running one is read afresh each time."""
        key = ("summary", len(capture.files()), capture.disk_bytes())
        cached: Optional[pcap_summary.Summariser] = capture.cache.get(key) if capture.job.done.is_set() else None
        if cached is None:
            try:
                cached = pcap_summary.summarise(capture.records())
            except reader.PcapError as exc:
                raise AgentError(protocol.BAD_CAPTURE, str(exc)) from None
            if capture.job.done.is_set():
                capture.cache = {k: v for k, v in capture.cache.items() if k[0] != "summary"}
                capture.cache[key] = cached
        return cached

    def _interface(self, name: Optional[str]) -> str:
        names = sorted(os.listdir("/sys/class/net"))
        if name is None:
            return default_interface() or "any"
        if name != "any" and name not in names:
            raise AgentError(
                protocol.UNKNOWN_INTERFACE,
                "no interface %r on this host" % name,
                hint="interfaces here: " + ", ".join(names + ["any"]),
            )
        return name

    def _user(self) -> str:
        wanted = self.settings.get("capture_user")
        for user in [wanted] if wanted else ["tcpdump", "nobody"]:
            try:
                pwd.getpwnam(user)
                return str(user)
            except KeyError:
                continue
        raise AgentError(
            protocol.NO_CAPTURE_USER,
            "no unprivileged user to run tcpdump as (%s)" % (wanted or "tcpdump, nobody"),
            hint="create the user, or set capture_user in the host's policy",
        )

    def _running(self) -> List[Capture]:
        """Captures whose tcpdump has not exited (a stopping one still writes its ring)."""
        with self._lock:
            return [c for c in self.captures.values() if not c.job.done.is_set()]

    def _admit(self, ring: int) -> None:
        """Refuse a capture past max_captures running, or whose ring cannot fit in capture_total_bytes."""
        running = self._running()
        most = int(self.settings["max_captures"])
        if len(running) >= most:
            raise AgentError(
                protocol.QUOTA_EXCEEDED,
                "%d captures are running on this host, its cap (policy max_captures)" % len(running),
                rule="quota.captures",
                hint="wait for one to end, or stop one: job_cancel %s" % ", ".join(c.job.id for c in running),
            )
        held, total = sum(int(c.meta["ring_bytes"]) for c in running), int(self.settings["capture_total_bytes"])
        if held + ring > total:
            raise AgentError(
                protocol.QUOTA_EXCEEDED,
                "a ring of %d bytes does not fit: running captures hold %d of this "
                "host's %d (policy capture_total_bytes)" % (ring, held, total),
                rule="quota.capture_bytes",
                hint="ask for a smaller ring_bytes, or wait for a capture to end",
            )

    def _new_dir(self, user: str, ring: int) -> str:
        """A fresh directory only the capture user can write; its parent is traverse-only."""
        root = str(self.settings["capture_dir"])
        base = agent_capture_dir(root, self.agent.base_dir)
        for path in (root, base):
            os.makedirs(path, mode=0o711, exist_ok=True)
            os.chmod(path, 0o711)
        self._prune(base, ring)
        directory = os.path.join(base, "%d-%s" % (int(time.time()), secrets.token_hex(4)))
        os.mkdir(directory, 0o700)
        entry = pwd.getpwnam(user)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
        return directory

    def _prune(self, base: str, ring: int) -> None:
        """Make room for a new ring: keep the newest capture_keep finished captures, then delete the
        oldest of those until they, the running rings and the new one fit in capture_total_bytes."""
        running = self._running()
        busy = {c.dir for c in running}
        dirs = sorted((os.path.join(base, n) for n in os.listdir(base)), key=os.path.getmtime, reverse=True)
        kept = [d for d in dirs if d not in busy]
        keep = int(self.settings["capture_keep"])
        for old in kept[keep:]:
            shutil.rmtree(old, ignore_errors=True)
        room = int(self.settings["capture_total_bytes"]) - ring - sum(int(c.meta["ring_bytes"]) for c in running)
        sizes = [(d, _tree_bytes(d)) for d in kept[:keep]]  # newest first
        used = sum(size for _, size in sizes)
        while sizes and used > room:
            old, size = sizes.pop()
            shutil.rmtree(old, ignore_errors=True)
            used -= size

    def _watch_disk(self, capture: Capture) -> None:
        """Stop the capture while there is room left: what was captured stays readable."""
        floor = int(self.settings["capture_min_free_bytes"])
        while not capture.job.done.wait(WATCH_EVERY):
            try:
                info = os.statvfs(capture.dir)
            except OSError:
                continue
            free = info.f_bavail * info.f_frsize
            if free < floor or "No space left" in capture.job.stderr_tail():
                self.agent.jobs.stop(
                    capture.job, "disk full: %d bytes free under %s (floor %d)" % (free, capture.dir, floor)
                )
                return


def _tree_bytes(directory: str) -> int:
    """Bytes in a capture's dir (its ring files; nothing below it is a dir)."""
    try:
        return sum(entry.stat(follow_symlinks=False).st_size for entry in os.scandir(directory))
    except OSError:
        return 0


def agent_capture_dir(root: str, agent_dir: str) -> str:
    """Each agent keeps (and prunes) its captures in its own directory under capture_dir."""
    return os.path.join(root, hashlib.sha256(os.path.abspath(agent_dir).encode()).hexdigest()[:12])


def build_filter(mode: str, target: Optional[str], custom: Optional[str]) -> Tuple[str, str]:
    """(BPF expression, mode used) for a mode and target; a custom filter wins."""
    if mode not in MODES:
        raise bad_params("unknown mode %r" % mode, hint="modes: " + ", ".join(MODES))
    if custom is not None and custom.strip():
        return custom.strip(), "custom"
    if mode == "custom":
        raise bad_params("mode custom needs a filter", hint="pass filter='tcp port 5432', for example")
    if mode == "auto":
        mode = _guess_mode(target)
    if mode == "web":
        return "tcp and (%s)" % " or ".join("port %d" % p for p in WEB_PORTS), mode
    if mode == "dns":
        return "port 53", mode
    if mode == "diagnosis":
        return (DIAGNOSIS + (" or " + _host_expr(target) if target else "")), mode
    if target is None:
        raise bad_params("mode %s needs a target" % mode, hint="an IP or host name for host, a number for port")
    if mode == "port":
        return "port %d" % _port(target), mode
    return "(%s) or port 53" % _host_expr(target), mode


def _guess_mode(target: Optional[str]) -> str:
    if target is None:
        return "diagnosis"
    if target.isdigit():
        return "port"
    if target.lower() in ("web", "http", "https"):
        return "web"
    if target.lower() == "dns":
        return "dns"
    return "host"


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise bad_params("port must be a number 1-65535, got %r" % text)
    return int(text)


def _host_expr(target: str) -> str:
    """`host A or host B`: the target's addresses, names resolved here, on the target."""
    try:
        return "host %s" % ipaddress.ip_address(target)
    except ValueError:
        pass
    if not NAME_RE.match(target):
        raise bad_params("target %r is neither an IP address nor a host name" % target)
    try:
        found = sorted({info[4][0] for info in socket.getaddrinfo(target, None)})
    except socket.gaierror as exc:
        raise AgentError(
            protocol.UNRESOLVED,
            "cannot resolve %r on this host: %s" % (target, exc.strerror),
            hint="pass an IP address instead",
        ) from None
    return " or ".join("host %s" % a for a in found[:8])


def compile_filter(
    tcpdump: str, iface: str, snaplen: int, expression: str, preexec: Optional[Callable[[], None]] = None
) -> None:
    """tcpdump -d: a filter that does not compile is refused with tcpdump's own message."""
    if not expression:
        return
    argv = [tcpdump, "-d", "-i", iface, "-s", str(snaplen), "--", expression]
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=_clean_env(),
            timeout=20,
            preexec_fn=preexec,
        )
    except subprocess.TimeoutExpired:
        raise AgentError(protocol.BAD_FILTER, "tcpdump -d did not finish compiling the filter in 20 s") from None
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AgentError(
            protocol.BAD_FILTER,
            "the filter does not compile: %s" % (message[-1] if message else "?"),
            hint="BPF syntax as in man pcap-filter, e.g. 'tcp port 443 and host 10.0.0.5'",
        )


def tcpdump_stats(stderr: str) -> Dict[str, int]:
    stats = {}
    for key, pattern in (
        ("captured", r"(\d+) packets? captured"),
        ("received_by_filter", r"(\d+) packets? received by filter"),
        ("dropped_by_kernel", r"(\d+) packets? dropped by kernel"),
    ):
        found = re.findall(pattern, stderr)
        if found:
            stats[key] = int(found[-1])
    return stats


def _tcpdump_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("tcpdump:") and "listening on" not in ln]
    return lines[-1] if lines else stderr.strip()[-300:]


def parse_flow(text: str) -> Tuple[int, bytes, int, bytes, int]:
    """'tcp 10.0.0.1:5000>10.0.0.2:80' (as flows() writes it) -> proto, src, sport, dst, dport."""
    try:
        name, ends = text.split(" ", 1)
        proto = {"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58}[name]
        src, dst = ends.split(">")
        (sa, sp), (da, dp) = _endpoint(src, proto), _endpoint(dst, proto)
        return proto, sa, sp, da, dp
    except (KeyError, ValueError):
        raise bad_params("flow %r is not of the form 'tcp 10.0.0.1:5000>10.0.0.2:80'" % text) from None


def _endpoint(text: str, proto: int) -> Tuple[bytes, int]:
    if proto not in (6, 17):
        return ipaddress.ip_address(text).packed, 0
    host, _, port = text.rpartition(":")
    return ipaddress.ip_address(host.strip("[]")).packed, int(port)


def list_interfaces() -> List[Dict[str, Any]]:
    """Every interface from /sys/class/net, with addresses and the default route from `ip -j`."""
    addrs = {entry.get("ifname"): entry for entry in _ip_json(["addr", "show"])}
    default = {r.get("dev") for r in _ip_json(["route", "show", "default"])} | {
        r.get("dev") for r in _ip_json(["-6", "route", "show", "default"])
    }
    out = []
    for name in sorted(os.listdir("/sys/class/net")):
        entry = addrs.get(name, {})
        out.append(
            {
                "name": name,
                "state": _read("/sys/class/net/%s/operstate" % name),
                "mtu": int(_read("/sys/class/net/%s/mtu" % name) or 0),
                "mac": _read("/sys/class/net/%s/address" % name),
                "addresses": ["%s/%s" % (a.get("local"), a.get("prefixlen")) for a in entry.get("addr_info", [])],
                "default_route": name in default,
            }
        )
    return out


def default_interface() -> Optional[str]:
    for route in _ip_json(["route", "show", "default"]):
        if route.get("dev"):
            return str(route["dev"])
    return None


def local_addresses() -> List[str]:
    return [str(a.get("local")) for e in _ip_json(["addr", "show"]) for a in e.get("addr_info", [])]


def _ip_json(args: List[str]) -> List[Dict[str, Any]]:
    ip = shutil.which("ip", path=SBIN_PATH)
    if ip is None:
        return []
    try:
        done = subprocess.run(
            [ip, "-j"] + args,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            env=_clean_env(),
            preexec_fn=sandbox.preexec(profiles.probe(), ip),
        )
        data = json.loads(done.stdout or b"[]")
    except (subprocess.TimeoutExpired, ValueError, OSError):
        return []
    return data if isinstance(data, list) else []


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def methods(agent: Any) -> Dict[str, Callable[[Dict[str, Any]], Any]]:
    service = CaptureService(agent)
    return {
        protocol.CAPTURE_INTERFACES: service.interfaces,
        protocol.CAPTURE_START: service.start,
        protocol.CAPTURE_STATUS: service.status,
        protocol.CAPTURE_SUMMARY: service.summary,
        protocol.CAPTURE_FLOWS: service.flows,
        protocol.CAPTURE_FINGERPRINTS: service.fingerprints,
        protocol.CAPTURE_PACKETS: service.packets,
    }
