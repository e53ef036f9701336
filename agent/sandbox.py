"""Layer 2 of the boundary: one OS sandbox for every child the agent starts.

A `Profile` says what one tool may touch. `preexec(profile)` is the function a
forked child runs before it execs the tool (subprocess and pexpect both take
one); `fork_call` runs a Python function in a forked, sandboxed child instead
(regex searches). What the child gets, each layer on its own:

- Landlock (ctypes syscalls): read only the profile's paths, write only its
  work dirs, execute only the tool and its ELF interpreter, no TCP (ABI >= 4),
  no signals or abstract sockets outside the sandbox (ABI >= 6);
- no_new_privs, a capability bounding set cut to what the tool needs, rlimits;
- a cgroup of its own (agent/cgroups.py): memory (tmpfs and shared memory
  included, no swap), processes, and CPU where the profile bounds it;
- as root: new mount, IPC and network namespaces (crash, drgn: no network, one
  private tmpfs of a fixed size on /tmp, /var/tmp and /dev/shm, System V shared
  memory capped to the same size), and a PID namespace whose init is the tool, so every
  descendant dies with it. An intermediate process waits for the tool, mirrors
  its exit status and kills it when the agent is gone (polling its parent:
  PR_SET_PDEATHSIG would fire when the agent *thread* that forked it ends).

Nothing here may take a lock or import after fork: everything is prepared in
the parent, and the child only makes system calls.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import json
import os
import resource
import select
import signal
import struct
import threading
import time
from typing import Any, Callable, Dict, FrozenSet, Iterable, List, Optional, Tuple

from . import cgroups, protocol
from .errors import AgentError

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]

SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH, LANDLOCK_RULE_NET_PORT = 1, 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x8000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 4096, 1 << 14, 1 << 18

# Landlock file-system rights, by the ABI that introduced them.
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1, 2, 4, 8
FS_REMOVE_DIR, FS_REMOVE_FILE, FS_MAKE_CHAR, FS_MAKE_DIR = 16, 32, 64, 128
FS_MAKE_REG, FS_MAKE_SOCK, FS_MAKE_FIFO, FS_MAKE_BLOCK, FS_MAKE_SYM = 256, 512, 1024, 2048, 4096
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
READ = FS_READ_FILE | FS_READ_DIR
WRITE = (
    READ
    | FS_WRITE_FILE
    | FS_REMOVE_DIR
    | FS_REMOVE_FILE
    | FS_MAKE_DIR
    | FS_MAKE_REG
    | FS_MAKE_SYM
    | FS_MAKE_FIFO
    | FS_MAKE_SOCK
    | FS_REFER
    | FS_TRUNCATE
)
NET_ALL = 3  # bind and connect TCP (ABI 4)
NET_CONNECT = 2
SCOPE_ALL = 3  # abstract unix sockets and signals (ABI 6)

SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin", "/opt")
SYSTEM_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/os-release",
)
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")
PRIVATE_TMP = ("/tmp", "/var/tmp", "/dev/shm")
TMPFS_BYTES = 256 << 20  # a private tmpfs's size when the profile names none
ANSWER_CAP = 64 << 20  # bytes of a fork_call child's JSON answer (a search's matches)
UNIQUE_GRACE = 60.0  # seconds a child's own cgroup may stay empty before a sweep removes it
PARENT_POLL = 1.0  # seconds between the intermediate's checks that the agent is still there

# Capabilities by number (linux/capability.h).
CAP = {
    "DAC_OVERRIDE": 1,
    "DAC_READ_SEARCH": 2,
    "SETGID": 6,
    "SETUID": 7,
    "NET_ADMIN": 12,
    "NET_RAW": 13,
    "IPC_LOCK": 14,
    "SYS_RAWIO": 17,
    "SYS_PTRACE": 19,
    "SYS_ADMIN": 21,
    "SYS_RESOURCE": 24,
    "SYSLOG": 34,
    "PERFMON": 38,
    "BPF": 39,
}


class Profile:
    """What one kind of child may do. `caps` None keeps the agent's; a set keeps only those."""

    def __init__(
        self,
        name: str,
        read: Iterable[str] = (),
        write: Iterable[str] = (),
        caps: Optional[Iterable[str]] = None,
        isolate: bool = False,
        pid_ns: bool = True,
        rlimits: Optional[Dict[int, int]] = None,
        tcp: bool = False,
        devices: Iterable[str] = (),
        execute: Iterable[str] = (),
        tcp_connect: Iterable[int] = (),
        budget: Optional[cgroups.Budget] = None,
        group: Optional[cgroups.Rel] = None,
        tmpfs_bytes: int = TMPFS_BYTES,
    ) -> None:
        self.name = name
        self.budget = budget  # the child's cgroup limits (None: no cgroup of its own)
        self.group = group  # where that cgroup is (a session's, a shared one); None: the child's own
        self.tmpfs_bytes = tmpfs_bytes  # the private tmpfs (isolate), and System V shm in its IPC namespace
        self.tcp_connect = tuple(sorted(set(int(p) for p in tcp_connect)))  # ports (ABI >= 4): all else refused
        self.execute = tuple(execute)  # programs the tool itself starts (beyond the tool)
        self.devices = tuple(devices)  # device files to read, write and ioctl (crash: /dev/tty)
        self.read = tuple(read)
        self.write = tuple(write)
        self.caps: Optional[FrozenSet[int]] = None if caps is None else frozenset(CAP[c] for c in caps)
        self.isolate = isolate  # new mount, IPC and network namespaces, private /tmp
        self.pid_ns = pid_ns
        self.rlimits = dict(rlimits or {})
        self.tcp = tcp


def rlimits(
    cpu: Optional[float] = None,
    memory: Optional[int] = None,
    fsize: Optional[int] = None,
    nproc: Optional[int] = None,
    nofile: int = 4096,
) -> Dict[int, int]:
    """Limits for a profile: no core dumps ever (a tool's memory may hold the dump's secrets)."""
    limits = {resource.RLIMIT_CORE: 0, resource.RLIMIT_NOFILE: nofile}
    if cpu is not None:
        limits[resource.RLIMIT_CPU] = max(1, int(cpu))
    if memory is not None:
        limits[resource.RLIMIT_AS] = memory
    if fsize is not None:
        limits[resource.RLIMIT_FSIZE] = fsize
    if nproc is not None:
        limits[resource.RLIMIT_NPROC] = nproc
    return limits


# -- what this host offers ---------------------------------------------------


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or disabled."""
    abi = _libc.syscall(
        SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)
    )
    return max(0, int(abi))


@functools.lru_cache(maxsize=1)
def _namespaces_work() -> bool:
    """Whether a child may unshare the namespaces isolation uses (root; not refused by a seccomp
    filter or a container): tried once, for real, in a throwaway child."""
    if os.geteuid() != 0:
        return False
    pid = os.fork()
    if pid == 0:
        ok = _libc.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC) == 0
        os._exit(0 if ok else 1)
    return os.waitpid(pid, 0)[1] == 0


@functools.lru_cache(maxsize=1)
def _layers() -> Dict[str, Any]:
    """Landlock and namespaces: fixed for the agent's life, probed once."""
    abi = landlock_abi()
    namespaces = _namespaces_work()
    missing: List[str] = []
    if abi == 0:
        missing.append("Landlock is not available (kernel < 5.13, or not in the LSM list)")
    if not namespaces:
        missing.append(
            "no namespaces (the agent is not root, or unshare is refused): crash and drgn keep "
            "the network, and a tool's descendants are tracked by process group only"
        )
    if os.geteuid() != 0:
        missing.append("not root: capabilities cannot be narrowed")
    notes = []
    if 0 < abi < 4:
        notes.append(
            "Landlock ABI %d has no TCP rules: crash and drgn lose the network through a network "
            "namespace; bpftrace and tcpdump keep it" % abi
        )
    if 0 < abi < 3:
        notes.append("Landlock ABI %d cannot refuse truncate(2) by path" % abi)
    return {"missing": missing, "notes": notes, "landlock_abi": abi, "namespaces": namespaces}


def status() -> Dict[str, Any]:
    """Which layers this host gives every child: `full`, or `partial` with the reasons. A child
    without a memory cgroup is partial: rlimits do not count tmpfs, shared memory or its children."""
    layers = _layers()
    missing = list(layers["missing"])
    why = cgroups.problem()
    if why is not None:
        missing.append(
            "no memory cgroup (%s): children are bounded by rlimits and their tmpfs size only, which do "
            "not count shared memory, memfds or their other processes" % why
        )
    return {
        "sandbox": "partial" if missing else "full",
        "missing": missing,
        "notes": layers["notes"],
        "landlock_abi": layers["landlock_abi"],
        "namespaces": layers["namespaces"],
        "cgroups": cgroups.describe(),
        "no_new_privs": True,
    }


def summary() -> str:
    s = status()
    return "full" if s["sandbox"] == "full" else "partial (%s)" % "; ".join(s["missing"])


def require(policy_settings: Dict[str, Any]) -> None:
    """Refuse to start a tool when policy demands the full sandbox and this host lacks it."""
    if policy_settings.get("require_sandbox"):
        cgroups.tree()  # set up now: a subtree the host refuses makes the sandbox partial
    if policy_settings.get("require_sandbox") and status()["sandbox"] != "full":
        raise AgentError(
            protocol.SANDBOX_UNAVAILABLE,
            "this host's policy requires the full sandbox, and it is partial: %s" % "; ".join(status()["missing"]),
            hint="run the agent as root on a kernel with Landlock and a writable memory cgroup (a delegated one under "
            "systemd), or set require_sandbox false in the host's policy",
            rule="sandbox.required",
        )


# -- preparing a child (in the parent) ----------------------------------------


def executables(path: str) -> List[str]:
    """The files execve opens to start `path`: itself, its #! interpreter, their ELF interpreters."""
    found: List[str] = []
    for _ in range(4):
        real = os.path.realpath(path)
        if real in found:
            break
        found.append(real)
        nxt = _interpreter(real)
        if nxt is None:
            break
        path = nxt
    return found


def _interpreter(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
            if head.startswith(b"#!"):
                line = (head + handle.readline(256)).split(b"\n", 1)[0][2:].strip()
                return line.split()[0].decode() if line else None
            if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only
                return None
            (phoff,) = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            handle.seek(phoff)
            table = handle.read(phentsize * phnum)
            for i in range(phnum):
                (ptype,) = struct.unpack_from("<I", table, i * phentsize)
                if ptype == 3:  # PT_INTERP
                    offset, _vaddr, _paddr, size = struct.unpack_from("<QQQQ", table, i * phentsize + 8)
                    handle.seek(offset)
                    return handle.read(size).rstrip(b"\0").decode()
    except (OSError, struct.error, UnicodeDecodeError, IndexError):
        return None
    return None


class _Plan:
    """Everything a child needs, computed before fork."""

    def __init__(self, profile: Profile, binary: Optional[str], extra: Optional[Callable[[], None]]) -> None:
        self.profile = profile
        self.extra = extra
        self.abi = landlock_abi()
        self.namespaces = status()["namespaces"]
        exe = [
            path for program in ([binary] if binary else []) + list(profile.execute) for path in executables(program)
        ]
        writes = list(profile.write)
        private = [d for d in PRIVATE_TMP if profile.isolate and self.namespaces and os.path.isdir(d)]
        self.private_tmp = [d.encode() for d in private]
        # Paths the tool needs that a private tmpfs would hide: bound back at the same place.
        needed = [os.path.realpath(p) for p in list(profile.read) + writes + exe + list(profile.devices)]
        self.rebind = sorted(set(p for p in needed if os.path.exists(p) and any(_beneath(p, d) for d in private)))
        self.rules: List[Tuple[str, int]] = [(p, READ) for p in SYSTEM_DIRS + SYSTEM_FILES + profile.read]
        self.rules += [(p, FS_READ_FILE | FS_WRITE_FILE) for p in DEVICES]
        self.rules += [(p, FS_READ_FILE | FS_WRITE_FILE | FS_IOCTL_DEV) for p in profile.devices]
        self.rules += [(p, WRITE) for p in writes]
        self.rules += [(p, FS_EXECUTE | FS_READ_FILE) for p in exe]
        self.after_mount = [(d, WRITE) for d in private]  # the private tmpfs, opened once mounted
        self.tmpfs_options = b"size=%d,mode=1777" % max(1 << 20, profile.tmpfs_bytes)
        self.ipc_limits = _ipc_limits(profile) if profile.isolate and self.namespaces else []
        self.last_cap = int(_read_first("/proc/sys/kernel/cap_last_cap") or 40)
        self.parent = os.getpid()
        self.max_fd = min(65536, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        self.group, self.own_group = _group_for(profile)
        self.cgroup_procs = [p.encode() for p in self.group.procs()] if self.group is not None else []


class Setup:
    """The function a forked child runs before it execs (subprocess's preexec_fn), and the cgroup
    it enters; release() removes that cgroup once the child is gone, when it is the child's own."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan

    def __call__(self) -> None:
        _enter(self.plan, fork_init=True)

    @property
    def group(self) -> Optional[cgroups.Group]:
        return self.plan.group

    def release(self) -> None:
        rel, self.plan.own_group = self.plan.own_group, None
        tree = cgroups.tree()
        if rel is not None and tree is not None:
            with _own_lock:
                _own.pop(rel, None)
            tree.remove(rel)


def release(preexec: Any) -> None:
    """After a child started with `preexec` is reaped: its own cgroup goes (a no-op for others)."""
    if isinstance(preexec, Setup):
        preexec.release()


def preexec(profile: Profile, binary: Optional[str], extra: Optional[Callable[[], None]] = None) -> Setup:
    """The function a forked child runs before it execs `binary` under `profile`."""
    return Setup(_Plan(profile, binary, extra))


def child_setup(
    settings: Dict[str, Any], profile: Profile, binary: Optional[str], extra: Optional[Callable[[], None]] = None
) -> Optional[Callable[[], None]]:
    """The preexec function for a tool under this host's policy: the sandbox unless policy turned
    it off (`sandbox: false`); a refusal when policy requires the full sandbox and it is partial."""
    require(settings)
    if not settings.get("sandbox", True):
        return extra
    limit_total(settings)
    return preexec(profile, binary, extra)


# -- cgroups: which one a child enters --------------------------------------------

_unique = itertools.count(1)
_own: Dict[cgroups.Rel, float] = {}  # children's own cgroups -> when made (sweep() removes forgotten ones)
_own_lock = threading.Lock()
_limited: List[cgroups.Tree] = []  # the subtrees given their total already (one per agent, in practice)


def limit_total(settings: Dict[str, Any]) -> None:
    """Once a subtree: all children together get sandbox_total_memory_bytes (default: half this
    host's RAM)."""
    tree = cgroups.tree()
    if tree is None or tree in _limited:
        return
    _limited[:] = [tree]
    total = settings.get("sandbox_total_memory_bytes") or _memory_total() // 2
    tree.limit_root(cgroups.Budget(memory=int(total)))


def _memory_total() -> int:
    for line in _read_first("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 8 << 30


def _group_for(profile: Profile) -> Tuple[Optional[cgroups.Group], Optional[cgroups.Rel]]:
    """The cgroup a child of `profile` enters (a session's, a shared one, or its own), and the
    path of its own; none without a budget or where cgroups are missing (status() says so)."""
    if profile.budget is None:
        return None, None
    tree = cgroups.tree()
    if tree is None:
        return None, None
    try:
        if profile.group is not None:
            return tree.group(profile.group, profile.budget), None
        _sweep(tree)
        rel = ("%s-%d" % (profile.name, next(_unique)),)
        with _own_lock:
            _own[rel] = time.monotonic()
        return tree.group(rel, profile.budget), rel
    except OSError as exc:
        raise AgentError(
            protocol.SANDBOX_UNAVAILABLE,
            "cannot give %s its cgroup: %s" % (profile.name, exc),
            hint="the agent's cgroups (fleet_check: sandbox) must stay writable by it",
            rule="sandbox.cgroup",
        ) from None


def _sweep(tree: cgroups.Tree) -> None:
    """Children's own cgroups nobody released (a child reaped by code that does not call release):
    removed once empty and older than UNIQUE_GRACE."""
    now = time.monotonic()
    with _own_lock:
        old = [rel for rel, made in _own.items() if now - made > UNIQUE_GRACE]
    for rel in old:
        if not tree.at(rel).pids():
            with _own_lock:
                _own.pop(rel, None)
            tree.remove(rel)


def _ipc_limits(profile: Profile) -> List[Tuple[bytes, bytes]]:
    """System V IPC in the child's own IPC namespace: shared memory up to its tmpfs size, and
    segments that die with their last process (shm_rmid_forced), few message queues."""
    size = max(1 << 20, profile.tmpfs_bytes)
    return [
        (b"/proc/sys/kernel/shmmax", b"%d" % size),
        (b"/proc/sys/kernel/shmall", b"%d" % (size // resource.getpagesize())),
        (b"/proc/sys/kernel/shm_rmid_forced", b"1"),
        (b"/proc/sys/kernel/msgmni", b"16"),
    ]


def _beneath(path: str, directory: str) -> bool:
    path = os.path.realpath(path)
    return path == directory or path.startswith(directory.rstrip("/") + "/")


# -- in the child ---------------------------------------------------------------


def _enter(plan: _Plan, fork_init: bool) -> None:
    """Apply the plan to this (forked, single-threaded) process."""
    profile = plan.profile
    root = os.geteuid() == 0
    for procs in plan.cgroup_procs:  # first: everything the child does is counted there
        _write_file(procs, b"0")
    if plan.namespaces and (profile.isolate or (profile.pid_ns and fork_init)):
        flags = (CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET if profile.isolate else 0) | (
            CLONE_NEWPID if profile.pid_ns and fork_init else 0
        )
        _check(_libc.unshare(flags), "unshare")
        for path, setting in plan.ipc_limits:
            _write_file(path, setting)
        if profile.pid_ns and fork_init:
            _become_init(plan)
    fds = _open_rules(plan.rules)
    if plan.private_tmp:
        _private_tmp(plan)
        fds += _open_rules(plan.after_mount)
    for limit, value in profile.rlimits.items():
        resource.setrlimit(limit, (value, value + 1 if limit == resource.RLIMIT_CPU else value))
    if root and profile.caps is not None:
        _narrow_caps(profile.caps, plan.last_cap)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if plan.abi:
        _landlock(plan, fds)
    for fd, _access in fds:
        os.close(fd)
    if plan.extra is not None:
        plan.extra()


def _private_tmp(plan: _Plan) -> None:
    """One fresh tmpfs of the profile's size, in our own mount namespace, for /tmp, /var/tmp and
    /dev/shm together (a subdir of it bound on each); the paths the tool needs below them are
    bind-mounted back in place."""
    _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "mount --make-rprivate /")
    keep = [(path, os.open(path, os.O_PATH | os.O_CLOEXEC)) for path in plan.rebind]
    first = plan.private_tmp[0]
    _check(_libc.mount(b"tmpfs", first, b"tmpfs", MS_NOSUID | MS_NODEV, plan.tmpfs_options), "mount tmpfs")
    subdirs = [b"%s/%d" % (first, i) for i in range(len(plan.private_tmp))]
    for sub in subdirs:
        os.mkdir(sub, 0o1777)
        os.chmod(sub, 0o1777)  # past the umask
    for sub, directory in list(zip(subdirs, plan.private_tmp))[1:] + [(subdirs[0], first)]:
        _check(_libc.mount(sub, directory, None, MS_BIND, None), "bind the tmpfs on %s" % directory.decode())
    for path, fd in keep:
        if os.path.isdir("/proc/self/fd/%d" % fd):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        _check(
            _libc.mount(("/proc/self/fd/%d" % fd).encode(), path.encode(), None, MS_BIND | MS_REC, None),
            "bind %s" % path,
        )
        os.close(fd)


def _write_file(path: bytes, value: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value)
    finally:
        os.close(fd)


def _become_init(plan: _Plan) -> None:
    """Fork the tool as init of the new PID namespace; this process stays as its waiter."""
    child = os.fork()
    if child == 0:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the waiter is single-threaded
        if os.getppid() == 1:
            os._exit(1)
        return
    os.closerange(0, plan.max_fd)  # the exec-error pipe and the tool's pipes belong to the tool
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)  # signals for the group reach the tool itself
    waited = {signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    while True:
        pid, code = os.waitpid(child, os.WNOHANG)
        if pid:
            break
        if os.getppid() != plan.parent:  # the agent is gone: so is its tool
            os.kill(child, signal.SIGKILL)
        got = signal.sigtimedwait(waited, PARENT_POLL)
        if got is not None and got.si_signo != signal.SIGCHLD and not _catches(child, got.si_signo):
            # As init of its namespace the tool ignores a signal it has no handler for; its
            # default action was to die, so that is what it gets.
            os.kill(child, signal.SIGKILL)
    if os.WIFSIGNALED(code):  # die the same way, so the agent sees the tool's own end
        if os.WTERMSIG(code) != signal.SIGKILL:
            signal.signal(os.WTERMSIG(code), signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {os.WTERMSIG(code)})
        os.kill(os.getpid(), os.WTERMSIG(code))
    os._exit(os.WEXITSTATUS(code) if os.WIFEXITED(code) else 1)


def _catches(pid: int, sig: int) -> bool:
    """Whether `pid` has a handler for `sig` (SigCgt in /proc/PID/status)."""
    for line in _read_first("/proc/%d/status" % pid).splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def _open_rules(rules: List[Tuple[str, int]]) -> List[Tuple[int, int]]:
    fds = []
    for path, access in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # absent on this host: nothing to allow
        if not os.path.isdir(path):
            access &= FILE_RIGHTS
        fds.append((fd, access))
    return fds


def _landlock(plan: _Plan, fds: List[Tuple[int, int]]) -> None:
    abi = plan.abi
    handled = _FS_BY_ABI[max(k for k in _FS_BY_ABI if k <= abi)]
    fields = [handled]
    if abi >= 4:
        fields.append(0 if plan.profile.tcp else NET_ALL)
    if abi >= 6:
        fields.append(SCOPE_ALL)
    attr = struct.pack("<%dQ" % len(fields), *fields)
    ruleset = _libc.syscall(SYS_LANDLOCK_CREATE_RULESET, attr, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    _check(ruleset, "landlock_create_ruleset")
    try:
        for fd, access in fds:
            if not access & handled:
                continue
            rule = struct.pack("<Qi", access & handled, fd)
            _check(
                _libc.syscall(
                    SYS_LANDLOCK_ADD_RULE,
                    ctypes.c_int(ruleset),
                    ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                    rule,
                    ctypes.c_uint32(0),
                ),
                "landlock_add_rule",
            )
        for port in plan.profile.tcp_connect if abi >= 4 and not plan.profile.tcp else ():
            rule = struct.pack("<QQ", NET_CONNECT, port)  # struct landlock_net_port_attr
            _check(
                _libc.syscall(
                    SYS_LANDLOCK_ADD_RULE,
                    ctypes.c_int(ruleset),
                    ctypes.c_int(LANDLOCK_RULE_NET_PORT),
                    rule,
                    ctypes.c_uint32(0),
                ),
                "landlock_add_rule (tcp port)",
            )
        _check(
            _libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)),
            "landlock_restrict_self",
        )
    finally:
        os.close(ruleset)


def _narrow_caps(keep: FrozenSet[int], last_cap: int) -> None:
    """Cut the bounding set to `keep` and clear the inheritable set: after execve a root tool has
    exactly `keep` (file caps of root count as all ones, ANDed with the bounding set)."""
    for cap in range(last_cap + 1):
        if cap not in keep:
            _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "drop capability %d" % cap)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # {effective, permitted, inheritable} x 2 words
    _check(_libc.capget(header, data), "capget")
    data[2] = data[5] = 0
    _check(_libc.capset(header, data), "capset")


def _check(result: int, what: str) -> None:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, "sandbox: %s failed: %s" % (what, os.strerror(errno)))


def _read_first(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()  # small files: cap_last_cap, a status
    except OSError:
        return ""


# -- a Python function in a sandboxed child -------------------------------------


class ChildFailed(Exception):
    """The child ended without an answer; `signal` is set when a limit killed it."""

    def __init__(self, message: str, sig: Optional[int] = None) -> None:
        super().__init__(message)
        self.signal = sig


def fork_sandboxed(profile: Profile, keep: Iterable[int] = ()) -> int:
    """os.fork(), the child entering `profile` (no exec): the child's pid, or 0 in the child.
    The child closes every fd but 0-2 and `keep`; if the sandbox fails, it exits at once."""
    plan = _Plan(profile, None, None)
    keep = sorted(set(keep))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            for low, high in zip([2] + keep, keep + [plan.max_fd]):
                os.closerange(low + 1, high)
            _enter(plan, fork_init=False)
        except BaseException:  # never run unsandboxed
            os._exit(1)
    return pid


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fork_call(fn: Callable[[], Any], profile: Profile, timeout: float, keep: Iterable[int] = ()) -> Any:
    """fn() in a forked child under `profile` (no exec); its JSON result, or ChildFailed.

    The calling thread waits on a pipe without the GIL, so a runaway fn (a
    catastrophic regex) stops only its child; the rlimit and `timeout` end it.
    fn may use files the caller opened, never locks other threads may hold."""
    read_fd, write_fd = os.pipe()
    pid = fork_sandboxed(profile, keep=[write_fd] + list(keep))
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            write_all(write_fd, json.dumps(fn()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        data = _read_all(read_fd, timeout, pid)
    finally:
        os.close(read_fd)
        _kill_and_reap(pid)
    return json.loads(data.decode()) if data is not None else None


def _read_all(fd: int, timeout: float, pid: int) -> Optional[bytes]:
    deadline = time.monotonic() + timeout
    chunks: List[bytes] = []
    size = 0
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            os.kill(pid, signal.SIGKILL)
            raise ChildFailed("over its %gs time limit" % timeout, signal.SIGKILL)
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        size += len(chunk)
        if size > ANSWER_CAP:
            os.kill(pid, signal.SIGKILL)
            raise ChildFailed("its answer went over %d bytes" % ANSWER_CAP, signal.SIGKILL)
        chunks.append(chunk)
    if chunks:
        return b"".join(chunks)
    _, code = os.waitpid(pid, 0)
    if os.WIFSIGNALED(code):
        raise ChildFailed("killed by signal %d" % os.WTERMSIG(code), os.WTERMSIG(code))
    raise ChildFailed("exited with status %d and no answer" % os.WEXITSTATUS(code))


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
