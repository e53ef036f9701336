"""What each tool the agent starts may touch: the sandbox profiles, in one place.

Every read path beyond the system dirs (sandbox.SYSTEM_DIRS) is named here,
so SECURITY.md and this file say the same thing. Limits come from the host's
policy (policy.DEFAULTS: sandbox_*, regex_cpu_seconds).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List

from .sandbox import Profile, rlimits

DEBUGINFO_DIRS = ("/usr/lib/debug",)
KERNEL_DIRS = ("/sys", "/proc", "/usr/src", "/lib/modules")
# crash and drgn read kernel memory as root: they get no capabilities at all (the dump is
# root's own file), no network, and a private /tmp; drgn keeps setuid/setgid only to drop
# to nobody once the dump is open.
# SYSLOG: /proc/kallsyms shows zero addresses without it where perf_event_paranoid > 1 (Debian: 3),
# so bpftrace could not name func, ksym() or kstack frames (seen on the VM host: keys as raw IPs).
BPFTRACE_CAPS = ("SYS_ADMIN", "BPF", "PERFMON", "SYS_RESOURCE", "IPC_LOCK", "SYS_PTRACE", "DAC_READ_SEARCH", "SYSLOG")
TCPDUMP_CAPS = ("NET_RAW", "NET_ADMIN", "SETUID", "SETGID")


def _settings(policy: Any) -> Dict[str, Any]:
    return policy.settings  # type: ignore[no-any-return]


LIVE_CORE = "/proc/kcore"
LIVE_READ = ("/proc", "/sys")  # kallsyms, iomem, modules, vmcoreinfo of the running kernel


def _live(vmcore: str, caps: Iterable[str] = ()) -> Dict[str, List[str]]:
    """A live session (policy live_kernel): opening /proc/kcore needs CAP_SYS_RAWIO."""
    if vmcore != LIVE_CORE:
        return {"read": [], "caps": list(caps)}
    return {"read": list(LIVE_READ), "caps": list(caps) + ["SYS_RAWIO"]}


def crash(policy: Any, vmlinux: str, vmcore: str, workdir: str, modules: Iterable[str] = ()) -> Profile:
    """`modules`: the modules' debuginfo files fetched for this session (crash loads them with mod -s)."""
    s = _settings(policy)
    live = _live(vmcore)
    return Profile(
        "crash",
        read=[vmlinux, vmcore, workdir] + list(modules) + _debuginfo(s) + live["read"],
        write=[workdir],
        caps=live["caps"],
        devices=["/dev/tty"],
        isolate=True,
        rlimits=rlimits(cpu=s["sandbox_cpu_seconds"], memory=s["sandbox_memory_bytes"], fsize=s["sandbox_file_bytes"]),
    )


def drgn(policy: Any, vmlinux: str, vmcore: str, workdir: str, python_paths: Iterable[str]) -> Profile:
    s = _settings(policy)
    live = _live(vmcore, ("SETUID", "SETGID"))
    return Profile(
        "drgn",
        read=[vmlinux, vmcore, workdir] + list(python_paths) + _debuginfo(s) + live["read"],
        write=[workdir],
        caps=live["caps"],
        isolate=True,
        rlimits=rlimits(
            cpu=s["sandbox_cpu_seconds"],
            memory=s["sandbox_memory_bytes"],
            fsize=s["sandbox_file_bytes"],
            nproc=s["sandbox_processes"],
        ),
    )


def bpftrace(policy: Any, workdir: str, duration: float = 60.0) -> Profile:
    """bpftrace popen()s `sh -c "clang-N -Wp,-v ..."` to find include dirs (and dies when it cannot
    start sh): sh may start, but inside the same sandbox it can start nothing else (not clang, not
    what a system() call names), write only the work dir and read only what bpftrace reads."""
    s = _settings(policy)
    return Profile(
        "bpftrace",
        read=list(KERNEL_DIRS) + [workdir],
        write=[workdir],
        caps=BPFTRACE_CAPS,
        execute=["/bin/sh"],
        rlimits=rlimits(cpu=duration + 60, fsize=s["sandbox_file_bytes"]),
    )


def tcpdump(policy: Any, capture_dir: str, duration: float = 60.0, file_bytes: int = 0) -> Profile:
    """A capture writes its ring; a filter check (`tcpdump -d`, capture_dir "") writes nothing."""
    write = [capture_dir] if capture_dir else []
    return Profile(
        "tcpdump",
        read=["/proc", "/sys"] + write,
        write=write,
        caps=TCPDUMP_CAPS,
        rlimits=rlimits(cpu=duration + 60, fsize=max(file_bytes, 1 << 20) + (1 << 20)),
    )


def command() -> Profile:
    """The catalogue's fixed read-only commands (uname, ps, dmesg, ss...): they keep their
    capabilities (dmesg needs CAP_SYSLOG, ss -p reads other processes) but write nothing, exec
    nothing else."""
    return Profile(
        "command",
        read=[
            "/proc",
            "/sys",
            "/etc/machine-id",
            "/var/log/journal",
            "/run/log/journal",
            "/etc/services",
            "/etc/protocols",
        ],
        rlimits=rlimits(),
    )


NET_FILES = (
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
)


def debuginfod(policy: Any, fetch_dir: str, ports: Iterable[int], python_paths: Iterable[str]) -> Profile:
    """The debuginfod download (agent/dumps/fetch_worker.py): TCP connect to the servers' ports only
    (Landlock ABI >= 4; before that it keeps the network, as it must), name resolution and CA
    files to read, its build id's cache dir to write, no capabilities, the file size capped
    by the cache quota."""
    s = _settings(policy)
    return Profile(
        "debuginfod",
        read=list(NET_FILES) + list(python_paths) + [fetch_dir],
        write=[fetch_dir],
        caps=(),
        tcp_connect=ports,
        rlimits=rlimits(cpu=3600, fsize=int(s["debuginfod_cache_bytes"]) + 1),
    )


JOURNAL_DIRS = ("/var/log/journal", "/run/log/journal", "/etc/machine-id")


def log_reader(name: str, dump: str, workdir: str, seconds: float, file_bytes: int, forked: bool = False) -> Profile:
    """A reader of a dump's kernel log for triage (makedumpfile --dump-dmesg; the agent's own printk
    reader, `forked` without exec): the dump to read, its work dir to write one file, no
    capabilities, no network, memory bounded (the dump's contents are untrusted)."""
    return Profile(
        name,
        read=[dump, workdir],
        write=[workdir],
        caps=(),
        isolate=True,
        pid_ns=not forked,
        rlimits=rlimits(cpu=seconds, memory=1 << 30, fsize=file_bytes),
    )


def journal(dirs: Iterable[str], workdir: str, seconds: float, file_bytes: int) -> Profile:
    """journalctl reading the previous boot's kernel messages: the journal to read, its output file
    in the work dir (its stdout), nothing else."""
    return Profile(
        "journal",
        read=[*JOURNAL_DIRS, workdir, *dirs],
        write=[workdir],
        caps=(),
        isolate=True,
        rlimits=rlimits(cpu=seconds, fsize=file_bytes),
    )


def probe() -> Profile:
    """Fixed-argv probes the agent runs for its facts (`tool --version`, `ip -j addr`): read
    anything, write and exec nothing."""
    return Profile("probe", read=["/"], rlimits=rlimits(cpu=30))


def search(policy: Any) -> Profile:
    """A regex over an output: only the files already open, a CPU limit."""
    return Profile("search", pid_ns=False, rlimits=rlimits(cpu=_settings(policy)["regex_cpu_seconds"]))


def _debuginfo(settings: Dict[str, Any]) -> List[str]:
    return list(DEBUGINFO_DIRS) + [str(d) for d in settings.get("vmlinux_dirs") or []]
