"""Where dumps lie: the allowed dump dirs, the common layouts, and what each dump is."""

from __future__ import annotations

import os
import re
from typing import Any, Dict, Iterator, List, Optional

from .. import protocol
from ..errors import AgentError
from . import dmesg, formats, oops

DEFAULT_DIRS = ("/var/crash",)
KDUMP_CONFIGS = (
    ("/etc/kdump.conf", re.compile(r"^\s*path\s+(\S+)", re.M)),  # RHEL/Fedora
    ("/etc/default/kdump-tools", re.compile(r"^\s*KDUMP_COREDIR=\"?([^\"\s]+)", re.M)),
)  # Debian
DUMP_NAMES = re.compile(r"^(vmcore(\.flat)?|dump\.\d+|vmcore-incomplete)$")
SKIP = re.compile(r"(dmesg|\.txt$|\.log$|^vmlinu[xz])")
MAX_ENTRIES = 2000  # per dir: a dump dir with more files is not read further


def kdump_path() -> Optional[str]:
    """The `path` kdump's configuration writes dumps to, when configured."""
    for config, rx in KDUMP_CONFIGS:
        try:
            with open(config) as handle:
                match = rx.search(handle.read())
        except OSError:
            continue
        if match:
            return match.group(1)
    return None


def allowed_roots(policy_dirs: Optional[List[str]]) -> List[str]:
    """Dirs dumps may be read from (policy `dump_dirs`; default /var/crash and kdump's path)."""
    dirs = list(policy_dirs) if policy_dirs is not None else list(DEFAULT_DIRS) + [d for d in [kdump_path()] if d]
    return [os.path.realpath(d) for d in dirs]


def inside(path: str, roots: List[str]) -> bool:
    real = os.path.realpath(path)
    return any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots)


def check_allowed(path: str, roots: List[str], what: str = "dump") -> str:
    """The real path of `path` if it lies inside an allowed dir (symlinks resolved first)."""
    if not os.path.isabs(path):
        raise AgentError(
            protocol.BAD_PARAMS,
            "%s path %r is not absolute" % (what, path),
            hint="pass the path exactly as dumps_list reported it",
        )
    if not inside(path, roots):
        raise AgentError(
            protocol.POLICY_DENIED,
            "%s %s is outside this host's dump dirs (%s)" % (what, path, ", ".join(roots)),
            hint="move the dump under an allowed dir, or add its dir to `dump_dirs` "
            "in /etc/crashfleet/agent-policy.json",
            rule="policy.dump_dirs",
        )
    return os.path.realpath(path)


def scan(dirs: List[str], roots: List[str]) -> Dict[str, Any]:
    """Every dump under dirs, newest first, plus the dirs that were skipped and why."""
    dumps: List[Dict[str, Any]] = []
    skipped: List[Dict[str, str]] = []
    for directory in dirs:
        if not inside(directory, roots):
            skipped.append({"dir": directory, "reason": "outside the allowed dump dirs (%s)" % ", ".join(roots)})
            continue
        if not os.path.isdir(directory):
            skipped.append({"dir": directory, "reason": "missing"})
            continue
        for path in _candidates(directory):
            entry = describe(path)
            if entry is not None:
                dumps.append(entry)
    dumps.sort(key=lambda d: d["mtime"], reverse=True)
    return {"dumps": dumps, "dirs": dirs, "skipped": skipped}


def _candidates(directory: str) -> Iterator[str]:
    """Plain files at the top, and dump-named files one level down (<ip>-<date>/vmcore,
    <timestamp>/dump.<timestamp>)."""
    for entry in _entries(directory):
        if entry.is_file(follow_symlinks=False) and not SKIP.search(entry.name):
            yield entry.path
        elif entry.is_dir(follow_symlinks=False):
            for sub in _entries(entry.path):
                if sub.is_file(follow_symlinks=False) and DUMP_NAMES.match(sub.name):
                    yield sub.path


def _entries(directory: str) -> List[os.DirEntry]:  # type: ignore[type-arg]
    try:
        with os.scandir(directory) as it:
            return sorted(it, key=lambda e: e.name)[:MAX_ENTRIES]
    except OSError:
        return []


def describe(path: str) -> Optional[Dict[str, Any]]:
    """What one file is, or None when it is not a dump."""
    try:
        info = formats.identify(path)
        st = os.stat(path)
    except (formats.NotADump, OSError, ValueError, IndexError):
        return None
    except Exception:  # struct.error on a damaged header: not a dump we can read
        return None
    truncated = st.st_size < info.get("expected_size", 0)
    info.update(
        path=path,
        size=st.st_size,
        mtime=st.st_mtime,
        truncated=truncated,
        incomplete=truncated or os.path.basename(path).endswith("-incomplete"),
    )
    log = dmesg.beside(path)
    if log is not None:
        try:
            summary = dmesg.summary(log)
            summary["title"] = oops.scan(log)["title"]  # what the crash is called: grouping folds on it
            info["dmesg"] = summary
        except OSError:
            pass  # unreadable: the dump is still listed
    return info
