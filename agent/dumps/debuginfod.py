"""A dump's vmlinux by build id from debuginfod servers, into a cache with a byte quota.

The download is an agent job (progress, cancel) run by fetch_worker.py in its
sandbox; the agent checks the build id of what arrived before it is used, and
removes a partial or wrong file. Layout follows elfutils' client:
<cache>/<build id>/debuginfo.
"""

from __future__ import annotations

import functools
import glob
import os
import pkgutil
import shutil
import sys
import threading
import urllib.parse
from typing import Any, Dict, List, Optional

from .. import profiles, protocol, sandbox
from ..errors import AgentError
from ..jobs import _clean_env
from . import formats

URLS_GLOB = "/etc/debuginfod/*.urls"
PART = "debuginfo.part"
HEX = set("0123456789abcdef")


def urls(policy_urls: Optional[List[str]]) -> List[str]:
    """Policy `debuginfod_urls`, else elfutils' convention: /etc/debuginfod/*.urls and DEBUGINFOD_URLS."""
    if policy_urls is not None:
        found = [str(u) for u in policy_urls]
    else:
        found = []
        for path in sorted(glob.glob(URLS_GLOB)):
            try:
                with open(path) as handle:
                    found += handle.read().split()
            except OSError:
                continue
        found += os.environ.get("DEBUGINFOD_URLS", "").split()
    out: List[str] = []
    for url in found:
        if urllib.parse.urlsplit(url).scheme in ("http", "https") and url not in out:
            out.append(url)
    return out


def ports(servers: List[str]) -> List[int]:
    parts = [urllib.parse.urlsplit(u) for u in servers]
    return sorted(set(p.port or (443 if p.scheme == "https" else 80) for p in parts))


def valid_build_id(build_id: Optional[str]) -> bool:
    return bool(build_id) and 8 <= len(str(build_id)) <= 128 and set(str(build_id)) <= HEX


class Fetch:
    """One running or finished download."""

    def __init__(self, build_id: str, job: Any, directory: str, servers: List[str]) -> None:
        self.build_id, self.job, self.dir, self.servers = build_id, job, directory, servers
        self.path = os.path.join(directory, "debuginfo")
        self.part = os.path.join(directory, PART)
        self.done = threading.Event()
        self.error: Optional[AgentError] = None

    def status(self) -> Dict[str, Any]:
        try:
            got = os.stat(self.part).st_size
        except OSError:
            got = None
        return {
            "fetching": not self.done.is_set(),
            "build_id": self.build_id,
            "job_id": self.job.id,
            "output_id": self.job.output_id,
            "bytes": got,
            "servers": self.servers,
        }


class Debuginfod:
    def __init__(self, agent: Any) -> None:
        self.agent, self.policy = agent, agent.policy
        self.fetches: Dict[str, Fetch] = {}
        self._lock = threading.Lock()

    @property
    def root(self) -> str:
        return str(self.policy.settings["debuginfod_cache_dir"])

    def servers(self) -> List[str]:
        return urls(self.policy.settings["debuginfod_urls"])

    def cached(self, build_id: Optional[str]) -> Optional[str]:
        """The cached file for build_id, if there is one and its build id is right."""
        if not valid_build_id(build_id):
            return None
        path = os.path.join(self.root, str(build_id), "debuginfo")
        if os.path.isfile(path) and _build_id(path) == build_id:
            os.utime(path)  # the cache evicts the least recently used first
            return path
        return None

    def status(self, dump: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """For dumps_list, when no local vmlinux matches: cached, or fetchable, or None."""
        build_id = dump.get("build_id")
        path = self.cached(build_id)
        if path:
            return {"present": True, "source": "debuginfod", "vmlinux": path, "cached": True}
        servers = self.servers()
        if valid_build_id(build_id) and servers:
            return {
                "present": False,
                "source": "debuginfod",
                "cached": False,
                "servers": servers,
                "note": "crash_open fetches it by build id %s" % build_id,
            }
        return None

    def obtain(self, dump: Dict[str, Any], missing: AgentError, wait: float) -> Any:
        """The vmlinux path, a pending fetch's status (a dict), or an error saying what is missing."""
        build_id = dump.get("build_id")
        path = self.cached(build_id)
        if path:
            return path
        servers = self.servers()
        if not servers or not valid_build_id(build_id):
            why = (
                "no debuginfod server configured (policy debuginfod_urls, /etc/debuginfod/*.urls, DEBUGINFOD_URLS)"
                if valid_build_id(build_id)
                else "the dump carries no build id"
            )
            raise AgentError(
                missing.kind,
                "%s; %s" % (missing.message, why),
                hint=missing.hint,
                **{k: v for k, v in missing.extra.items() if k == "looked"},
            )
        return self.waited(str(build_id), servers, wait)

    def waited(self, build_id: str, servers: List[str], wait: float) -> Any:
        """The file for build_id once its fetch ends within `wait` (its error raised), else the
        running fetch's status (a dict)."""
        path = self.cached(build_id)
        if path:
            return path
        fetch = self.start(build_id, servers)
        fetch.done.wait(max(0.0, wait))
        if not fetch.done.is_set():
            return fetch.status()
        with self._lock:
            if self.fetches.get(fetch.build_id) is fetch:
                del self.fetches[fetch.build_id]  # a failure is retried by the next open
        if fetch.error is not None:
            raise fetch.error
        return fetch.path

    def start(self, build_id: str, servers: List[str]) -> Fetch:
        if not valid_build_id(build_id):  # it names a dir under the cache: hex, nothing else
            raise AgentError(protocol.BAD_PARAMS, "not a build id: %r" % (build_id,)[:80])
        with self._lock:
            running = self.fetches.get(build_id)
            if running is not None:
                return running
            directory = os.path.join(self.root, build_id)
            room = self._make_room(build_id)
            os.makedirs(directory, mode=0o700, exist_ok=True)
            _remove(os.path.join(directory, PART))  # left by an agent that was killed
            profile = profiles.debuginfod(self.policy, directory, ports(servers), _python_paths())
            argv = [
                sys.executable,
                "-I",
                "-S",
                "-c",
                worker_source(),
                build_id,
                os.path.join(directory, PART),
                str(room),
            ] + servers
            job = self.agent.jobs.start(
                "debuginfod",
                argv,
                env=_clean_env(),
                meta={"build_id": build_id},
                preexec=sandbox.child_setup(self.policy.settings, profile, sys.executable),
            )
            fetch = Fetch(build_id, job, directory, servers)
            self.fetches[build_id] = fetch
        threading.Thread(target=self._finish, args=(fetch,), name="debuginfod-" + build_id[:12], daemon=True).start()
        return fetch

    def _finish(self, fetch: Fetch) -> None:
        """When the job ends: keep the file if its build id is right, else remove it and say why."""
        job = fetch.job
        job.done.wait()
        try:
            fetch.error = self._check(fetch, job)
        finally:
            if fetch.error is not None:
                _remove(fetch.part)
                _remove_dir_if_empty(fetch.dir)
            fetch.done.set()

    def _check(self, fetch: Fetch, job: Any) -> Optional[AgentError]:
        if job.state != "done" or job.exit_status != 0:
            lines = job.stderr_tail().strip().splitlines()
            why = (
                lines[-1]
                if lines
                else "the download %s (%s)" % (job.state, job.stop_reason or "exit %s" % job.exit_status)
            )
            return AgentError(
                protocol.DEBUGINFOD_FAILED,
                why,
                hint="check the servers (policy debuginfod_urls), or "
                "install the debuginfo package; dumps_list says which",
                absent=job.exit_status == 2,
            )  # every server answered 404
        found = _build_id(fetch.part)
        if found != fetch.build_id:
            return AgentError(
                protocol.DEBUGINFOD_WRONG_FILE,
                "a debuginfod server (%s) sent a file whose build id is "
                "%s, not the dump's %s: it was removed" % (", ".join(fetch.servers), found, fetch.build_id),
                hint="the server's index is wrong or it is not a debuginfod server",
            )
        os.replace(fetch.part, fetch.path)
        return None

    def _make_room(self, keep: str) -> int:
        """Bytes the new file may take: the quota less the cache, the least recently used
        entries removed first (half the quota is always made free)."""
        quota = int(self.policy.settings["debuginfod_cache_bytes"])
        entries = []
        for path in glob.glob(os.path.join(self.root, "*", "debuginfo")):
            if os.path.basename(os.path.dirname(path)) == keep:
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, path))
        used = sum(e[1] for e in entries)
        for _mtime, size, path in sorted(entries):
            if used <= quota // 2:
                break
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)
            used -= size
        return max(0, quota - used)


def _build_id(path: str) -> Optional[str]:
    try:
        return formats.elf_build_id(path)
    except (OSError, formats.NotADump):
        return None
    except Exception:
        return None


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _remove_dir_if_empty(path: str) -> None:
    try:
        os.rmdir(path)
    except OSError:
        pass


@functools.lru_cache(maxsize=1)
def worker_source() -> str:
    return (pkgutil.get_data(__name__, "fetch_worker.py") or b"").decode()


def _python_paths() -> List[str]:
    """What `python -I -S` reads: its prefix (a venv's pyvenv.cfg) and the stdlib."""
    import sysconfig

    paths = [
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sysconfig.get_paths()["stdlib"],
        sysconfig.get_paths()["platstdlib"],
    ]
    return sorted(set(p for p in paths if p))
