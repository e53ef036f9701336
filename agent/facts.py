"""What this host is and what it can do: cheap to gather, cached per boot."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import threading
from typing import Any, Dict, List, Optional, Tuple

from . import AGENT_VERSION, PROTOCOL_VERSION, domains, profiles, sandbox
from .dumps import drgn_pick

TOOLS: Dict[str, List[str]] = domains.tools()  # what the domains run, by name: argv printing its version
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PROBING = threading.Lock()
VERSION_RE = re.compile(r"(\d+\.\d+(?:\.\d+)?(?:[-~+.][0-9A-Za-z.]+)?)")


def gather(
    store_dir: str,
    cache_path: Optional[str] = None,
    refresh: bool = False,
    drgn: Tuple[Optional[str], str] = (None, drgn_pick.VENV),
    probe: bool = True,
) -> Dict[str, Any]:
    """All facts; tool versions come from a cache keyed by boot and binaries (and, for drgn, the
    interpreters it may be imported by: policy `drgn_python` or drgn_pick's candidates). Without
    `probe` (first contact), versions not cached yet are left unprobed (`probed: false`)."""
    facts: Dict[str, Any] = {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "arch": platform.machine(),
        "distro": distro(),
        "python": platform.python_version(),
        "agent": {"version": AGENT_VERSION, "protocol": PROTOCOL_VERSION, "pid": os.getpid()},
        "uid": os.geteuid(),
        "btf": os.path.exists("/sys/kernel/btf/vmlinux"),
        "tracefs": tracefs_mount(),
        "kcore": os.path.exists("/proc/kcore"),
        "boot_id": _read("/proc/sys/kernel/random/boot_id").strip(),
        "uptime_s": _uptime(),
        "store": store_space(store_dir),
        "sandbox": sandbox.summary(),
    }
    facts["tools"] = tools(cache_path, refresh, facts["boot_id"], drgn, probe)
    return facts


def distro() -> Dict[str, str]:
    fields: Dict[str, str] = {}
    for line in _read("/etc/os-release").splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("ID", "VERSION_ID", "PRETTY_NAME", "ID_LIKE"):
            fields[key.lower()] = value.strip().strip('"')
    return fields


def tracefs_mount() -> Optional[str]:
    for line in _read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[2] == "tracefs":
            return parts[1]
    return None


def store_space(store_dir: str) -> Dict[str, Any]:
    usage = shutil.disk_usage(store_dir)
    return {"dir": store_dir, "free_bytes": usage.free, "total_bytes": usage.total}


def tools(
    cache_path: Optional[str],
    refresh: bool,
    boot_id: str,
    drgn: Tuple[Optional[str], str] = (None, drgn_pick.VENV),
    probe: bool = True,
) -> Dict[str, Any]:
    """Path and version of each tool; versions are cached since running them costs
    (~0.1-0.2 s of CPU: too much to spend before `hello` on hundreds of hosts at once)."""
    paths = {name: shutil.which(name, path=SBIN_PATH + ":" + os.environ.get("PATH", "")) for name in TOOLS}
    pythons = drgn_pick.candidates(*drgn)
    key = _cache_key(dict(paths, **{"python:" + p: p for p in pythons}), boot_id)
    cached = None if refresh else _load_cache(cache_path, key)  # written whole (os.replace): no lock
    if cached is not None:
        return cached
    if not probe:
        return {
            name: {"present": bool(path), "path": path, "version": None, "probed": False}
            for name, path in paths.items()
        }
    with _PROBING:  # one probe at a time: a second caller waits, then finds the cache
        cached = None if refresh else _load_cache(cache_path, key)
        return cached if cached is not None else _probe_all(cache_path, key, paths, drgn)


def _probe_all(
    cache_path: Optional[str], key: str, paths: Dict[str, Optional[str]], drgn: Tuple[Optional[str], str]
) -> Dict[str, Any]:
    found: Dict[str, Any] = {name: {"present": False} for name in TOOLS}
    threads = [
        threading.Thread(target=_probe, args=(name, path, found))
        for name, path in paths.items()
        if path and name != "drgn"
    ]
    threads.append(threading.Thread(target=_drgn, args=(drgn, paths["drgn"], found)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    _save_cache(cache_path, key, found)
    return found


def _drgn(drgn: Tuple[Optional[str], str], command: Optional[str], found: Dict[str, Any]) -> None:
    """The drgn the agent's workers would use (interpreter, version, libkdumpfile), not the
    `drgn` command on PATH: that one may run on another python with another drgn."""
    chosen = drgn_pick.public(drgn_pick.choose(*drgn))
    found["drgn"] = dict(chosen, present=bool(chosen.get("importable")), path=command)


def _probe(name: str, path: str, found: Dict[str, Any]) -> None:
    enter = sandbox.preexec(profiles.probe(), path)

    def niced() -> None:  # probes yield the CPU to the work the agent was started for
        os.nice(10)
        enter()

    try:
        proc = subprocess.run(
            [path] + TOOLS[name],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=8,
            env={"PATH": SBIN_PATH, "LC_ALL": "C"},
            preexec_fn=niced,
        )
        text = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    except (OSError, subprocess.TimeoutExpired) as exc:
        found[name] = {"present": True, "path": path, "version": None, "error": str(exc)}
        return
    match = VERSION_RE.search(text)
    found[name] = {"present": True, "path": path, "version": match.group(1) if match else None}


def _cache_key(paths: Dict[str, Optional[str]], boot_id: str) -> str:
    stamps: List[Tuple[str, float]] = []
    for name, path in sorted(paths.items()):
        try:
            stamps.append((name, os.stat(path).st_mtime if path else 0.0))
        except OSError:
            stamps.append((name, -1.0))
    # The interpreter is part of the key: drgn is found (or not) by the python the agent runs on.
    return json.dumps([boot_id, sys.executable, stamps, sorted(paths.items(), key=lambda kv: kv[0])], default=str)


def _load_cache(path: Optional[str], key: str) -> Optional[Dict[str, Any]]:
    if not path:
        return None
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data.get("tools") if data.get("key") == key else None


def _save_cache(path: Optional[str], key: str, found: Dict[str, Any]) -> None:
    if not path:
        return
    tmp = "%s.%d.tmp" % (path, os.getpid())
    try:
        with open(tmp, "w") as handle:
            json.dump({"key": key, "tools": found}, handle)
        os.replace(tmp, path)
    except OSError:
        pass


def _uptime() -> Optional[float]:
    text = _read("/proc/uptime").split()
    return float(text[0]) if text else None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""
