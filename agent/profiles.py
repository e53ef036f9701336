"""What each tool the agent starts may touch: the sandbox profiles, in one place.

Every read path beyond the system dirs (sandbox.SYSTEM_DIRS) is named here,
so SECURITY.md and this file say the same thing. Limits come from the host's
policy (policy.DEFAULTS: sandbox_*, regex_cpu_seconds), and so do the budgets
each child's cgroup gets (agent/cgroups.py): a dump session's crash and drgn
share the session's memory; every other child has its own.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Optional

from .cgroups import Budget, Rel
from .sandbox import Profile, rlimits

PROBE_MEMORY = 512 << 20  # the agent's own fixed-argv probes (versions, interfaces, filter checks)

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


def _pids(settings: Dict[str, Any]) -> int:
    """pids.max counts threads: tools' thread pools (drgn's OpenMP, LLVM) grow with the CPUs."""
    return int(settings["sandbox_processes"]) + (os.cpu_count() or 1)


def _tool(settings: Dict[str, Any]) -> Budget:
    return Budget(memory=int(settings["sandbox_tool_memory_bytes"]), pids=_pids(settings))


def session_budget(policy: Any) -> Budget:
    """A dump session's group: its crash and drgn (and drgn code) together."""
    return Budget(memory=int(_settings(policy)["sandbox_session_memory_bytes"]))


def drgn_code_budget(policy: Any) -> Budget:
    """The group of the process that runs callers' drgn code (in its session's group)."""
    s = _settings(policy)
    cpus = s["sandbox_drgn_cpus"]
    return Budget(pids=_pids(s), cpus=float(cpus) if cpus else None)


def _session_child(settings: Dict[str, Any], group: Optional[Rel]) -> Dict[str, Any]:
    """crash's or drgn's budget: its session's memory when it has a session, its own otherwise."""
    memory = int(settings["sandbox_session_memory_bytes"])
    budget = Budget(pids=_pids(settings)) if group else Budget(memory=memory, pids=_pids(settings))
    return {"budget": budget, "group": group, "tmpfs_bytes": min(int(settings["sandbox_tmpfs_bytes"]), memory)}


LIVE_CORE = "/proc/kcore"
LIVE_READ = ("/proc", "/sys")  # kallsyms, iomem, modules, vmcoreinfo of the running kernel


def _live(vmcore: str, caps: Iterable[str] = ()) -> Dict[str, List[str]]:
    """A live session (policy live_kernel): opening /proc/kcore needs CAP_SYS_RAWIO."""
    if vmcore != LIVE_CORE:
        return {"read": [], "caps": list(caps)}
    return {"read": list(LIVE_READ), "caps": list(caps) + ["SYS_RAWIO"]}


def crash(
    policy: Any, vmlinux: str, vmcore: str, workdir: str, modules: Iterable[str] = (), group: Optional[Rel] = None
) -> Profile:
    """`modules`: the modules' debuginfo files fetched for this session (crash loads them with mod -s);
    `group`: its cgroup in the session's (sessions.Session.group)."""
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
        **_session_child(s, group + ("crash",) if group else None),
    )


def drgn(
    policy: Any, vmlinux: str, vmcore: str, workdir: str, python_paths: Iterable[str], group: Optional[Rel] = None
) -> Profile:
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
        **_session_child(s, group + ("drgn",) if group else None),
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
        budget=_tool(s),
    )


def tcpdump(policy: Any, capture_dir: str, duration: float = 60.0, file_bytes: int = 0) -> Profile:
    """A capture writes its ring; a filter check (`tcpdump -d`, capture_dir "") writes nothing."""
    s = _settings(policy)
    write = [capture_dir] if capture_dir else []
    return Profile(
        "tcpdump",
        read=["/proc", "/sys"] + write,
        write=write,
        caps=TCPDUMP_CAPS,
        rlimits=rlimits(cpu=duration + 60, fsize=max(file_bytes, 1 << 20) + (1 << 20)),
        budget=_tool(s),
    )


def command(policy: Any = None) -> Profile:
    """The catalogue's fixed read-only commands (uname, ps, dmesg, ss...): they keep their
    capabilities (dmesg needs CAP_SYSLOG, ss -p reads other processes) but write nothing, exec
    nothing else."""
    budget = _tool(_settings(policy)) if policy is not None else Budget(memory=PROBE_MEMORY, pids=64)
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
        budget=budget,
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
        budget=_tool(s),
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
    anything, write and exec nothing; one cgroup shared by all of them."""
    budget = Budget(memory=PROBE_MEMORY, pids=64 + (os.cpu_count() or 1))
    return Profile("probe", read=["/"], rlimits=rlimits(cpu=30), budget=budget, group=("probe",))


def search(policy: Any) -> Profile:
    """A regex over an output: only the files already open, a CPU limit; regex children share one
    cgroup of the tool budget."""
    s = _settings(policy)
    return Profile(
        "search",
        pid_ns=False,
        rlimits=rlimits(cpu=s["regex_cpu_seconds"]),
        budget=_tool(s),
        group=("search",),
    )


def _debuginfo(settings: Dict[str, Any]) -> List[str]:
    return list(DEBUGINFO_DIRS) + [str(d) for d in settings.get("vmlinux_dirs") or []]
