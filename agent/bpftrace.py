"""bpftrace on this host: what it can trace, a vetted tool library, and safe bounded runs.

Safety lives here, not in the controller: never --unsafe, never -c/-p/-o, programs
checked by bpftrace_safety on bpftrace's own tokens (and on its AST when headers can
bring C macros), limits pinned through every environment name a bpftrace release
reads, duration and output capped by policy, and every run a job in its own process group.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pkgutil
import re
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import bounded as capped
from . import bpftrace_ast, facts, profiles, protocol, sandbox
from . import bpftrace_safety as safety
from .errors import AgentError
from .params import bounded, param

BUNDLED = ("runqlat", "syscount", "tcpretrans", "biolatency", "execsnoop", "proccount", "oomkill")
DISTRO_GLOB = "/usr/sbin/*.bt"
DEBUGFS_TRACING = "/sys/kernel/debug/tracing"
TRACEFS = "/sys/kernel/tracing"
KILL_GRACE = 10.0  # seconds past the duration before the job is stopped from outside
# The program's own interval probe (attached last) ends it `duration` after every probe is in;
# attaching takes time first: vfscount.bt's 73 kprobes took 5-15 s on a QEMU TCG guest, and a
# backstop counted from launch killed the run before it printed its maps.
ATTACH_GRACE = 60.0
MAX_MAP_KEYS = 1000  # keys of one map sent to the controller (the largest values)
MAX_PRINTED = 8000  # chars of printf output returned next to the maps
RUN_CAP = 32 << 20  # bytes of stdout (or stderr) of a short bpftrace run: -d's AST, -l's probe list
AGGREGATIONS = ("count", "sum", "avg", "min", "max", "hist", "lhist", "stats")
_KIND_RE = re.compile(r"(@\w*)\s*(?:\[[^\]\n]*\])?\s*=\s*(%s)\s*\(" % "|".join(AGGREGATIONS))
_ERROR_RE = re.compile(r"^(?:[^:\n]*):(\d+):(\d+)(?:-\d+)?: ERROR: (.*)$", re.M)
_FILTER_RE = re.compile(r"[A-Za-z0-9_:*?.\[\]/+-]{1,200}\Z")
_POSITIONAL_RE = re.compile(r"\$([1-9])\b")
_KPROBE_RE = re.compile(r"(?:^|[\s,{}])(kprobe|kretprobe|k|kr):", re.M)
_MAP_LINES = tuple(b'{"type": "%s"' % t for t in (b"map", b"hist", b"stats", b"lost_events"))
_TRACEPOINT_RE = re.compile(r"(?:^|[\s,{}])(tracepoint|t):", re.M)


def methods(agent: Any) -> Dict[str, Callable[[Dict[str, Any]], Any]]:
    bt = Bpftrace(agent)
    return {
        protocol.BPFTRACE_INFO: bt.info,
        protocol.BPFTRACE_PROBES: bt.probes,
        protocol.BPFTRACE_TOOLS: bt.tools,
        protocol.BPFTRACE_RUN: bt.run,
        protocol.BPFTRACE_RESULT: bt.result,
    }


class Bpftrace:
    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.policy = agent.policy
        self.cache_path = os.path.join(agent.base_dir, "bpftrace-cache.json")

    # -- RPC methods

    def info(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """Version, --info features, BTF, tracefs and the probe types offered (cached per boot)."""
        binary = self._binary()
        tracefs = self._tracefs()
        key = self._cache_key(binary, tracefs)
        cached = _cache_get(self.cache_path, "info", key)
        if cached is None or param(params, "refresh", bool, False):
            _status, out, err = self._run([binary, "--info"])
            cached = {
                "features": _parse_info(out + err),
                "probe_types": _probe_types(self._run([binary, "-l"])[1].splitlines()),
            }
            _cache_put(self.cache_path, "info", key, cached)
        version = self.agent.facts({}).get("tools", {}).get("bpftrace", {}).get("version")
        return dict(
            cached,
            version=version,
            path=binary,
            btf=os.path.exists("/sys/kernel/btf/vmlinux"),
            tracefs=tracefs,
            kprobes=_kprobes_available(tracefs),
            limits=self._limits(),
            max_duration=self._max_duration(),
        )

    def probes(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """`bpftrace -l [filter]`, sorted, into the store; the full list only when asked (drift checks)."""
        binary = self._binary()
        tracefs = self._tracefs()
        pattern = param(params, "filter", str, None)
        argv = [binary, "-l"]
        if pattern:
            if not _FILTER_RE.match(pattern) or pattern.startswith("-"):
                raise AgentError(
                    protocol.BAD_PARAMS,
                    "filter %r is not a probe glob" % pattern[:60],
                    hint="e.g. tracepoint:sched:* or *tcp*",
                )
            argv.append(pattern)
        status, out, err = self._run(argv)
        if status != 0:
            raise AgentError(protocol.BPFTRACE_FAILED, "bpftrace -l failed: %s" % _errors(err)[-300:])
        probes = sorted(set(line.strip() for line in out.splitlines() if line.strip()))
        text = "".join(p + "\n" for p in probes)
        writer = self.agent.store.create("bpftrace-probes", {"argv": argv})
        writer.write(text.encode())
        writer.close(exit_status=0)
        page_bytes = bounded(params, "page_bytes", 16000, 256, 100000)
        result = {
            "count": len(probes),
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "types": _probe_types(probes),
            "output_id": writer.output_id,
            "page": self.agent.store.page(writer.output_id, None, max_bytes=page_bytes),
        }
        if tracefs.get("error"):
            result["tracefs_error"] = tracefs["error"]
        if param(params, "full", bool, False):
            result["probes"] = probes
        return result

    def tools(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """The tool library, each with whether it can run here (checked once per boot)."""
        binary = self._binary()
        tracefs = self._tracefs()
        library = _library()
        cached = _cache_get(self.cache_path, "tools", self._tools_key(binary, tracefs, library))
        if cached is None or param(params, "refresh", bool, False):
            with ThreadPoolExecutor(max_workers=4) as pool:
                checks = dict(zip(library, pool.map(lambda t: self._can_run(binary, t, tracefs), library.values())))
            cached = {"checks": checks}
            _cache_put(self.cache_path, "tools", self._tools_key(binary, tracefs, library), cached)
        return {"tools": self._listing(library, cached["checks"])}

    @staticmethod
    def _listing(library: Dict[str, Dict[str, Any]], checks: Dict[str, Any]) -> List[Dict[str, Any]]:
        tools = []
        for name, tool in sorted(library.items()):
            runnable, reason = checks.get(name, (False, "not checked"))
            tools.append(
                {
                    "name": name,
                    "source": tool["source"],
                    "description": tool["description"],
                    "args": tool["args"],
                    "runnable": runnable,
                    "reason": reason,
                }
            )
        return tools

    def run(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """Start a program or tool as a job; a compile error comes back as an error with line and column."""
        self._binary()  # a host whose policy disables bpftrace says so before anything else
        program, args, label = self._program(params)
        return self.start(program, args, label, params, tool_checked=label != "program")

    def start(
        self,
        program: str,
        args: List[str],
        label: str,
        params: Dict[str, Any],
        meta: Optional[Dict[str, Any]] = None,
        tool_checked: bool = False,
    ) -> Dict[str, Any]:
        """Run a program as a bpftrace job through every check and cap a caller's program gets: `run`
        comes here, and so do domains that build their program themselves (agent/profile.py).
        `label` names the run in the job's meta (`bpftrace`), `meta` adds to it; params give duration,
        format, wait and page_bytes. A library tool (`tool_checked`) was checked by _check_tool."""
        binary = self._binary()
        safety.check_program(program)
        if not tool_checked and safety.has_preprocessor(program):
            self._confirm(binary, program, args)
        duration = float(bounded(params, "duration", 10.0, 0.001, 1e9))
        if duration > self._max_duration():
            raise AgentError(
                protocol.POLICY_DENIED,
                "duration %gs is over this host's bpftrace cap of %gs" % (duration, self._max_duration()),
                hint="ask for %gs or less (policy key bpftrace_max_duration)" % self._max_duration(),
                rule="policy.bpftrace_max_duration",
            )
        missing = _tracefs_missing(program, self._tracefs())
        if missing:
            raise AgentError(
                protocol.TRACEFS_MISSING,
                missing,
                hint="mount tracefs on this host, or allow the agent to (policy key bpftrace_mount_tracefs)",
            )
        self.agent.settle_params(params)
        fmt = param(params, "format", str, "auto")
        if fmt not in ("auto", "json", "text"):
            raise AgentError(protocol.BAD_PARAMS, "format must be auto, json or text, got %r" % fmt)
        kinds = map_kinds(program)
        if fmt == "auto":
            fmt = "json" if kinds else "text"
        # The program ends itself (printing its maps) when the duration is up; the job's
        # own timer is the backstop should bpftrace not exit.
        full = "%s\ninterval:ms:%d { exit(); }\n" % (program.rstrip("\n"), max(1, int(duration * 1000)))
        argv = [binary, "-f", fmt, "-e", full, "--"] + args
        preexec = sandbox.child_setup(
            self.policy.settings, profiles.bpftrace(self.policy, self.agent.jobs.workdir, duration), binary
        )
        job = self.agent.jobs.start(
            "bpftrace",
            argv,
            duration=duration + ATTACH_GRACE + KILL_GRACE,
            env=self._env(),
            preexec=preexec,
            meta=dict(meta or {}, bpftrace=label, format=fmt, kinds=kinds, duration=duration),
            max_output=int(self.policy.settings["bpftrace_max_output_bytes"]),
            keep_past_cap=_map_line if fmt == "json" else None,
        )
        status = self._settle(job, params)
        error = status.get("error")
        if error is not None:
            raise _run_error(error, output_id=job.output_id, job_id=job.id)
        return status

    def result(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """A run's status; once finished, with its maps (JSON runs) and its printed lines."""
        job = self.agent.jobs.get(param(params, "job_id", str))
        if job.kind != "bpftrace":
            raise AgentError(protocol.BAD_PARAMS, "job %s is not a bpftrace run" % job.id)
        return self._settle(job, params)

    # -- helpers

    def _settle(self, job: Any, params: Dict[str, Any]) -> Dict[str, Any]:
        status: Dict[str, Any] = self.agent.settle(job, params)
        if status["state"] == "running":
            return status
        error = _compile_error(job.stderr_tail()) if status["state"] == "failed" else None
        if error is not None:
            status["error"] = error
        elif job.meta.get("format") == "json":
            status.update(read_json_output(self._data_path(job.output_id), job.meta.get("kinds") or {}))
        return status

    def _program(self, params: Dict[str, Any]) -> Tuple[str, List[str], str]:
        """(program text, positional args, label) from `program` or `tool`."""
        program = param(params, "program", str, None)
        tool = param(params, "tool", str, None)
        raw = param(params, "args", dict, {})
        if (program is None) == (tool is None):
            raise AgentError(protocol.BAD_PARAMS, "give exactly one of program or tool")
        if program is not None:
            unknown = [k for k in raw if k.lstrip("$") not in [str(i) for i in range(1, 10)]]
            if unknown:
                raise AgentError(
                    protocol.BAD_PARAMS,
                    "args of a program are positional: keys 1..9 (for $1..$9), not %s" % ", ".join(sorted(unknown)),
                )
            values = {int(k.lstrip("$")): v for k, v in raw.items()}
            ordered = [values.get(i, "") for i in range(1, max(values, default=0) + 1)]
            return program, safety.check_args(ordered), "program"
        library = _library()
        if tool not in library:
            raise AgentError(
                protocol.UNKNOWN_TOOL,
                "no bpftrace tool %r" % tool,
                hint="bpftrace_tools lists them: " + ", ".join(sorted(library)),
            )
        spec = library[tool]
        names = [a["name"] for a in spec["args"]]
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise AgentError(
                protocol.BAD_PARAMS,
                "tool %s has no argument %s" % (tool, ", ".join(unknown)),
                hint="its arguments: %s" % (", ".join(names) or "none"),
            )
        ordered = [raw.get(a["name"], a["default"]) for a in spec["args"]]
        self._check_tool(self._binary(), tool, library)
        return spec["program"], safety.check_args(ordered), tool

    def _tools_key(self, binary: str, tracefs: Dict[str, Any], library: Dict[str, Dict[str, Any]]) -> str:
        programs = sorted((name, tool["program"]) for name, tool in library.items())
        return self._cache_key(binary, tracefs) + hashlib.sha256(json.dumps(programs).encode()).hexdigest()

    def _check_tool(self, binary: str, name: str, library: Dict[str, Dict[str, Any]]) -> None:
        """Refuse a library tool that cannot run here (cached check, else this tool alone)."""
        tracefs = self._tracefs()
        cached = _cache_get(self.cache_path, "tools", self._tools_key(binary, tracefs, library))
        check = (cached or {}).get("checks", {}).get(name) or self._can_run(binary, library[name], tracefs)
        if not check[0]:
            raise AgentError(
                protocol.TOOL_CANNOT_RUN,
                "tool %s cannot run on this host: %s" % (name, check[1]),
                hint="bpftrace_tools says which tools each host can run",
            )

    def _can_run(self, binary: str, tool: Dict[str, Any], tracefs: Dict[str, Any]) -> Tuple[bool, str]:
        try:
            safety.check_program(tool["program"])
        except AgentError as exc:
            return False, "refused: " + exc.message
        if _KPROBE_RE.search(safety.blank_comments_and_strings(tool["program"])) and not _kprobes_available(tracefs):
            return False, "uses kprobes, which this kernel does not offer (no kprobe_events in tracefs)"
        missing = _tracefs_missing(tool["program"], tracefs)
        if missing:
            return False, missing
        args = [str(a["default"]) for a in tool["args"]]
        status, out, err = self._run([binary, "-d", "-e", safety.as_run(tool["program"]), "--"] + args)
        try:
            bpftrace_ast.check_dump(tool["program"], out)
        except AgentError as exc:
            return False, "refused: " + exc.message
        if status != 0:
            return False, "does not compile here: " + (_errors(err)[-300:] or "exit status %d" % status)
        if bpftrace_ast.read_dump(out) is None:
            return False, "cannot be checked: bpftrace -d printed no AST this agent reads (bpftrace 0.17's)"
        if "will likely fail" in err or "not traceable" in err:
            return False, "compiles, but cannot attach here: " + _errors(err, "WARNING")[-300:]
        return True, "ok"

    def _confirm(self, binary: str, program: str, args: List[str]) -> None:
        """bpftrace's own AST of the program, checked with the token rules (bpftrace_ast).

        Headers bring C macros that bpftrace expands into the program after clang ran,
        where only its AST shows them. A dump costs 0.05-0.3 s here, so only programs
        with a preprocessor line (an allowed #include) pay it; tools are checked in _can_run.
        No AST, no run: bpftrace's errors come back as the run's would.
        """
        status, out, err = self._run([binary, "-d", "-e", safety.as_run(program), "--"] + args)
        if bpftrace_ast.read_dump(out) is None:
            error = _compile_error(err) or {
                "kind": protocol.BPFTRACE_FAILED,
                "message": "bpftrace -d (exit status %d) printed no AST this agent reads (bpftrace 0.17's)" % status,
            }
            raise _run_error(error)
        bpftrace_ast.check_dump(program, out)

    def _run(self, argv: List[str], timeout: float = 60.0) -> Tuple[int, str, str]:
        """A short bpftrace run (-d, -l, --info), its output kept up to RUN_CAP bytes a stream."""
        preexec = sandbox.child_setup(
            self.policy.settings, profiles.bpftrace(self.policy, self.agent.jobs.workdir, timeout), argv[0]
        )
        try:
            status, out, err = capped.run(argv, RUN_CAP, timeout, preexec, env=self._env(), cwd=self.agent.jobs.workdir)
        except subprocess.TimeoutExpired:
            raise AgentError(protocol.TIMEOUT, "%s took over %gs" % (" ".join(argv[:2]), timeout)) from None
        except capped.CapExceeded as exc:
            raise AgentError(
                protocol.OVER_CAP, "%s: %s; it was stopped" % (" ".join(argv[:2]), exc), cap=exc.cap
            ) from None
        finally:
            sandbox.release(preexec)
        return (status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def _binary(self) -> str:
        if not self.policy.settings["bpftrace_enabled"]:
            raise AgentError(
                protocol.POLICY_DENIED,
                "policy on this host disables bpftrace",
                rule="policy.bpftrace_enabled",
                hint="the host's /etc/crashfleet/agent-policy.json decides this",
            )
        path = shutil.which("bpftrace", path=facts.SBIN_PATH)
        if path is None:
            raise AgentError(
                protocol.NOT_INSTALLED,
                "bpftrace is not installed on this host",
                hint="install it (Debian: apt-get install bpftrace)",
            )
        return path

    def _tracefs(self) -> Dict[str, Any]:
        """Where tracefs is mounted; mounted here when missing and policy allows."""
        path = facts.tracefs_mount()
        _debugfs_tracing()
        if path is not None:
            return {"path": path, "mounted_now": False}
        if not self.policy.settings["bpftrace_mount_tracefs"]:
            return {
                "path": None,
                "mounted_now": False,
                "error": "tracefs is not mounted and policy "
                "(bpftrace_mount_tracefs) forbids mounting it: tracepoints will not be found",
            }
        return mount_tracefs()

    def _env(self) -> Dict[str, str]:
        return dict(self._limits(), PATH=facts.SBIN_PATH, LANG="C.UTF-8", LC_ALL="C.UTF-8", HOME="/nonexistent")

    def _limits(self) -> Dict[str, str]:
        """bpftrace's own limits, pinned: nothing from the caller reaches its environment."""
        return pinned_env(self.policy.settings)

    def _max_duration(self) -> float:
        cap: float = self.policy.max_duration
        return min(float(self.policy.settings["bpftrace_max_duration"]), cap)

    def _cache_key(self, binary: str, tracefs: Dict[str, Any]) -> str:
        try:
            stamp = os.stat(binary).st_mtime
        except OSError:
            stamp = -1.0
        boot = facts._read("/proc/sys/kernel/random/boot_id").strip()
        return json.dumps([boot, binary, stamp, tracefs.get("path")])

    def _data_path(self, output_id: str) -> str:
        return os.path.join(self.agent.store.root, output_id, "data")


def pinned_env(settings: Dict[str, Any]) -> Dict[str, str]:
    """Every BPFTRACE_* name a bpftrace release reads (v0.17 to master), pinned; see UNPINNED_ENV.

    v0.20 renamed the limits (BPFTRACE_STRLEN -> BPFTRACE_MAX_STRLEN, ...): both names
    are set, since each release reads only its own. Values are valid in every release.
    """
    strlen, keys = str(settings["bpftrace_strlen"]), str(settings["bpftrace_map_keys_max"])
    probes = str(settings["bpftrace_max_probes"])
    env = {
        "BPFTRACE_STRLEN": strlen,
        "BPFTRACE_MAX_STRLEN": strlen,
        "BPFTRACE_MAP_KEYS_MAX": keys,
        "BPFTRACE_MAX_MAP_KEYS": keys,
        "BPFTRACE_CAT_BYTES_MAX": "1",
        "BPFTRACE_MAX_CAT_BYTES": "1",  # cat() is refused anyway
        "BPFTRACE_MAX_PROBES": probes,
        "BPFTRACE_MAX_BPF_PROGS": probes,
        "BPFTRACE_NODE_MAX": "100000",
        "BPFTRACE_MAX_AST_NODES": "100000",  # AST nodes (0.17 / 0.20+)
        "BPFTRACE_MAX_TYPE_RES_ITERATIONS": "0",
        "BPFTRACE_ON_STACK_LIMIT": "32",
        "BPFTRACE_LOG_SIZE": "1000000",
        "BPFTRACE_PERF_RB_PAGES": "64",
        "BPFTRACE_NO_USER_SYMBOLS": "0",
        "BPFTRACE_NO_CPP_DEMANGLE": "0",
        "BPFTRACE_CPP_DEMANGLE": "1",
        "BPFTRACE_STACK_MODE": "bpftrace",
        "BPFTRACE_STR_TRUNC_TRAILER": "..",
        "BPFTRACE_PRINT_MAPS_ON_EXIT": "1",  # the maps are the result
        "BPFTRACE_COLOR": "never",
        "BPFTRACE_LICENSE": "GPL",
        "BPFTRACE_VERIFY_LLVM_IR": "0",
        "BPFTRACE_DEBUG_OUTPUT": "0",
    }
    for feature in ("ADDR", "DW_USTACK", "IMPORT", "IMPORT_STATEMENT", "MACRO", "MAP_DECL", "TSERIES", "TYPEINFO"):
        env["BPFTRACE_UNSTABLE_" + feature] = "0"  # newer releases' unstable syntax stays off
    return env


# The BPFTRACE_* names left unset (bpftrace's own default), and why; tests check that these and
# pinned_env() together cover every name in bpftrace's sources.
UNPINNED_ENV: Dict[str, str] = dict(
    [
        (name, "a path bpftrace finds itself; setting it would point bpftrace at other files")
        for name in (
            "BPFTRACE_BTF",
            "BPFTRACE_VMLINUX",
            "BPFTRACE_KERNEL_SOURCE",
            "BPFTRACE_KERNEL_BUILD",
            "BPFTRACE_OBJCOPY",
        )
    ]
    + [
        (name, "a hook of bpftrace's own test suite")
        for name in (
            "BPFTRACE_AVAILABLE_FUNCTIONS_TEST",
            "BPFTRACE_KCONFIG_TEST",
            "BPFTRACE_DUMMY_TS_MAP",
            "__BPFTRACE_NOTIFY_PROBES_ATTACHED",
            "__BPFTRACE_NOTIFY_AOT_PORTABILITY_DISABLED",
        )
    ]
    + [
        (name, "how symbols are found and printed, not a limit; defaults differ by build and release")
        for name in (
            "BPFTRACE_LAZY_SYMBOLICATION",
            "BPFTRACE_USE_BLAZESYM",
            "BPFTRACE_SHOW_DEBUG_INFO",
            "BPFTRACE_SYMBOL_SOURCE",
            "BPFTRACE_PROBE_INLINE",
        )
    ]
    + [("BPFTRACE_MISSING_PROBES", "what a probe that matches nothing does (warn or error), not a limit")]
    + [
        (
            "BPFTRACE_CACHE_USER_SYMBOLS",
            "its values differ by release (0/1 in 0.17, PER_PID/PER_PROGRAM/NONE "
            "later): any value is invalid somewhere",
        )
    ]
)


def _debugfs_tracing() -> None:
    """Trigger debugfs's tracing automount here, as the agent: bpftrace 0.17 expands kprobe
    wildcards from /sys/kernel/debug/tracing/available_filter_functions, and in its sandbox the
    first walk into that automount fails (ELOOP, seen on Debian 12's 6.1): `kprobe:vfs_*`
    then matched nothing and the run attached only BEGIN and its end timer."""
    try:
        os.stat(DEBUGFS_TRACING + "/README")
    except OSError:
        pass  # no debugfs: bpftrace falls back to what it can read


def mount_tracefs() -> Dict[str, Any]:
    try:
        proc = subprocess.run(
            ["mount", "-t", "tracefs", "nodev", TRACEFS],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            env={"PATH": facts.SBIN_PATH, "LC_ALL": "C"},
        )
        error = proc.stderr.decode("utf-8", "replace").strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        error = str(exc)
    path = facts.tracefs_mount()
    if path is None:
        return {"path": None, "mounted_now": False, "error": "mounting tracefs failed: %s" % error}
    return {"path": path, "mounted_now": True}


def map_kinds(program: str) -> Dict[str, str]:
    """Which aggregation fills each map (bpftrace's JSON says 'map' for count, sum, min and max alike)."""
    code = safety.blank_comments_and_strings(program)
    return {name: kind for name, kind in _KIND_RE.findall(code)}


def _map_line(line: bytes) -> bool:
    """A map bpftrace prints as it exits: kept even past the output cap (the printf flood is not)."""
    return line.startswith(_MAP_LINES)


def read_json_output(path: str, kinds: Dict[str, str]) -> Dict[str, Any]:
    """The last printed value of every map, plus the printf text, from a `-f json` output."""
    maps: Dict[str, Any] = {}
    printed: List[str] = []
    size = 0
    lost = 0
    try:
        handle = open(path, "rb")
    except OSError:
        return {"maps": {}, "printed": ""}
    with handle:
        for raw in handle:
            if not raw.startswith(b"{"):
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            etype, data = event.get("type"), event.get("data")
            if etype in ("map", "hist", "stats") and isinstance(data, dict):
                for name, value in data.items():
                    maps[name] = {"type": etype, "kind": kinds.get(name), "value": value}
            elif etype in ("printf", "time", "join", "syscall") and isinstance(data, str) and size < MAX_PRINTED:
                printed.append(data)
                size += len(data)
            elif etype == "lost_events" and isinstance(data, dict):
                lost += int(data.get("events", 0))
    for entry in maps.values():
        entry.update(_cut_keys(entry))
    result: Dict[str, Any] = {"maps": maps, "printed": "".join(printed)[:MAX_PRINTED]}
    if lost:
        result["lost_events"] = lost
    return result


def _cut_keys(entry: Dict[str, Any]) -> Dict[str, Any]:
    """Keep the MAX_MAP_KEYS largest keys of a keyed map; say how many were dropped."""
    value = entry["value"]
    if not isinstance(value, dict) or (entry["type"] == "stats" and "count" in value and "total" in value):
        return {}
    if len(value) <= MAX_MAP_KEYS:
        return {}
    ranked = sorted(value.items(), key=lambda kv: -_weight(kv[1]))
    return {"value": dict(ranked[:MAX_MAP_KEYS]), "keys_dropped": len(value) - MAX_MAP_KEYS}


def _weight(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return float(sum(b.get("count", 0) for b in value if isinstance(b, dict)))
    if isinstance(value, dict):
        return float(value.get("count", 0))
    return 0.0


def _run_error(error: Dict[str, Any], **data: Any) -> AgentError:
    """A compile or run error (as a status carries it) raised to the caller, where in the program included."""
    return AgentError(
        error["kind"],
        error["message"],
        hint=error.get("hint"),
        line=error.get("line"),
        column=error.get("column"),
        **data,
    )


def _compile_error(stderr: str) -> Optional[Dict[str, Any]]:
    """bpftrace's first error with its line and column, classified."""
    found = _ERROR_RE.search(stderr)
    if found is not None:
        line, column, message = int(found.group(1)), int(found.group(2)), found.group(3).strip()
        probe = "not found" in message and ("tracepoint" in message or "probe" in message)
        return {
            "kind": protocol.UNKNOWN_PROBE if probe else protocol.COMPILE_ERROR,
            "message": "line %d, column %d: %s" % (line, column, message),
            "line": line,
            "column": column,
            "hint": "bpftrace_probes lists the probes each host offers"
            if probe
            else "fix the program at line %s, column %s" % (line, column),
        }
    errors = _errors(stderr)
    if "Error attaching probe" in errors or "attach" in errors.lower():
        return {
            "kind": protocol.ATTACH_FAILED,
            "message": errors[-500:],
            "hint": "the probe exists in the program but not on this kernel; see bpftrace_probes",
        }
    if errors:
        return {"kind": protocol.BPFTRACE_FAILED, "message": errors[-500:]}
    return None


def _errors(stderr: str, level: str = "ERROR") -> str:
    """stderr without the noise bpftrace always prints here (RLIMIT_MEMLOCK, tracefs symbol warnings)."""
    keep = [
        line
        for line in stderr.splitlines()
        if level in line and "RLIMIT_MEMLOCK" not in line and "available_filter_functions" not in line
    ]
    return "\n".join(keep)


def _parse_info(text: str) -> Dict[str, Dict[str, str]]:
    sections: Dict[str, Dict[str, str]] = {}
    current: Optional[Dict[str, str]] = None
    for line in text.splitlines():
        if line and not line[0].isspace():
            current = sections.setdefault(line.strip(), {})
        elif current is not None and ":" in line:
            key, _, value = line.strip().partition(":")
            current[key.strip()] = value.strip()
    return sections


def _probe_types(probes: List[str]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for probe in probes:
        kind = probe.strip().split(":", 1)[0]
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def _tracefs_missing(program: str, tracefs: Dict[str, Any]) -> Optional[str]:
    """Why a program that uses tracepoints cannot run here (tracefs absent), or None."""
    if tracefs.get("path") or not _TRACEPOINT_RE.search(safety.blank_comments_and_strings(program)):
        return None
    return "uses tracepoints, but %s" % (tracefs.get("error") or "tracefs is not mounted")


def _kprobes_available(tracefs: Dict[str, Any]) -> bool:
    return bool(tracefs.get("path")) and os.path.exists(os.path.join(tracefs["path"], "kprobe_events"))


def _library() -> Dict[str, Dict[str, Any]]:
    """crashfleet's bundled tools (by name) and the distribution's (by file name, name.bt)."""
    tools: Dict[str, Dict[str, Any]] = {}
    for name in BUNDLED:
        data = pkgutil.get_data(__package__ or "crashfleet.agent", "bt/%s.bt" % name)
        if data is not None:
            tools[name] = _bundled(data.decode())
    for path in sorted(glob.glob(DISTRO_GLOB)):
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                program = handle.read(safety.MAX_PROGRAM_BYTES + 1)
        except OSError:
            continue
        tools[os.path.basename(path)] = _distro(os.path.basename(path), program)
    return tools


def _bundled(program: str) -> Dict[str, Any]:
    """Header: `// description` then `// args: name=default (help), ...` or `// args: none`."""
    lines = program.splitlines()
    description = lines[0].lstrip("/ ").strip() if lines else ""
    args = []
    spec = lines[1].split("args:", 1)[1].strip() if len(lines) > 1 and "args:" in lines[1] else "none"
    for part in [] if spec == "none" else spec.split(";"):
        match = re.match(r"\s*(\w+)=(\S*)\s*(?:\((.*)\))?", part)
        if match:
            args.append({"name": match.group(1), "default": match.group(2), "help": match.group(3) or ""})
    return {"source": "crashfleet", "description": description, "args": args, "program": program}


def _distro(filename: str, program: str) -> Dict[str, Any]:
    name = filename[:-3]
    match = re.search(r"^[\s/*#]*%s(?:\.bt)?[ \t]+(\S.*)$" % re.escape(name), program, re.M)
    description = match.group(1).strip() if match else ""
    positions = sorted(set(int(n) for n in _POSITIONAL_RE.findall(safety.blank_comments_and_strings(program))))
    args = [{"name": str(n), "default": "0", "help": "$%d" % n} for n in range(1, max(positions, default=0) + 1)]
    return {"source": "distro", "description": description, "args": args, "program": program}


def _cache_get(path: str, section: str, key: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path) as handle:
            entry = json.load(handle).get(section)
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(entry, dict) and entry.get("key") == key:
        value = entry.get("value")
        return value if isinstance(value, dict) else None
    return None


def _cache_put(path: str, section: str, key: str, value: Dict[str, Any]) -> None:
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        data = {}
    data[section] = {"key": key, "value": value}
    tmp = "%s.%d.%d.tmp" % (path, os.getpid(), threading.get_ident())
    try:
        with open(tmp, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
    except OSError:
        pass
