"""Open dump sessions: one per (vmcore, vmlinux), with a crash process and a drgn worker.

Sessions are reused, listed, closed, and closed when idle; the agent's shutdown
closes them all, so no crash or drgn process outlives the agent.
"""

from __future__ import annotations

import itertools
import os
import shutil
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import cgroups, protocol
from ..errors import AgentError
from . import drgn_pick
from .crash_session import CrashError, CrashSession, Setup
from .drgn_client import DrgnError, DrgnWorker
from .modules import Plan

REAP_EVERY = 15.0


class Session:
    def __init__(self, sid: str, dump: Dict[str, Any], vmlinux: str, workdir: str) -> None:
        self.id, self.dump, self.vmlinux, self.workdir = sid, dump, vmlinux, workdir
        self.vmcore: str = dump["path"]
        self.crash: Optional[CrashSession] = None
        self.drgn: Optional[DrgnWorker] = None
        self.created = self.last_used = time.time()
        self.opening = threading.Lock()  # held while crash starts: a second open waits for it
        self.drgn_lock = threading.Lock()
        self.notes: List[str] = []
        self.warnings: List[str] = []
        self.banner = ""  # what crash printed while it started (its warnings)
        self.checked = False  # crash's view of the kernel compared with drgn's, once
        self.modules: Optional[Plan] = None  # crash_open modules=true: the modules' debuginfo
        self.group: Optional[cgroups.Rel] = None  # its cgroup: the memory budget its processes share

    def touch(self) -> None:
        self.last_used = time.time()

    def info(self) -> Dict[str, Any]:
        crash = self.crash
        return {
            "session_id": self.id,
            "vmcore": self.vmcore,
            "vmlinux": self.vmlinux,
            "release": self.dump.get("release"),
            "arch": self.dump.get("arch"),
            "format": self.dump.get("format"),
            "created": self.created,
            "last_used": self.last_used,
            "crash_pid": crash.pid if crash else None,
            "minimal": bool(crash and crash.minimal),
            "drgn_pid": self.drgn.pid if self.drgn else None,
            "crash_restarts": crash.restarts if crash else 0,
        }

    def close(self) -> None:
        if self.crash is not None:
            self.crash.close()
        if self.drgn is not None:
            self.drgn.close()
        tree = cgroups.tree() if self.group is not None else None
        if tree is not None and self.group is not None:
            tree.remove(self.group)
        shutil.rmtree(self.workdir, ignore_errors=True)


class Sessions:
    def __init__(self, base_dir: str, max_sessions: int, idle: float) -> None:
        self.base_dir = os.path.join(base_dir, "sessions")
        self.max_sessions, self.idle = max_sessions, idle
        self.reap_every = min(REAP_EVERY, max(0.5, idle / 4))  # a short idle limit is kept closely
        self.by_id: Dict[str, Session] = {}
        self.by_key: Dict[Tuple[str, str], Session] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        reaper = threading.Thread(target=self._reap, name="dump-sessions-reaper", daemon=True)
        reaper.start()

    def get_or_create(self, dump: Dict[str, Any], vmlinux: str) -> Tuple[Session, bool]:
        key = (dump["path"], vmlinux)
        with self._lock:
            session = self.by_key.get(key)
            if session is not None:
                session.touch()
                return session, True
            if len(self.by_id) >= self.max_sessions:
                raise AgentError(
                    protocol.TOO_MANY_SESSIONS,
                    "%d dump sessions are open on this host (the policy's cap)" % len(self.by_id),
                    hint="close one with session_close; sessions_list shows them",
                    rule="quota.dump_sessions",
                )
            sid = "s%d" % next(self._ids)
            workdir = os.path.join(self.base_dir, sid)  # empty cwd for crash and drgn
            os.makedirs(workdir, mode=0o711, exist_ok=True)
            session = Session(sid, dump, vmlinux, workdir)
            self.by_id[sid], self.by_key[key] = session, session
            return session, False

    def get(self, sid: str) -> Session:
        session = self.by_id.get(sid)
        if session is None:
            raise AgentError(
                protocol.UNKNOWN_SESSION,
                "no dump session %r on this host: it was closed, expired after "
                "%ds idle, or the agent restarted" % (sid, self.idle),
                hint="open it again with crash_open (sessions_list shows open ones)",
            )
        session.touch()
        return session

    def start_crash(self, session: Session, binary: str, env: Dict[str, str], setup: Setup) -> Dict[str, Any]:
        """The session's crash, started once; concurrent opens of one session wait for it."""
        with session.opening:
            if session.crash is not None:
                return {"minimal": session.crash.minimal}
            modules = session.modules.files if session.modules is not None else []
            crash = CrashSession(binary, session.vmlinux, session.vmcore, session.workdir, env, setup, modules)
            try:
                started = crash.start()
            except CrashError as exc:
                self.close(session.id)
                hint = (
                    "the dump is cut short (%d of %d bytes): copy it again from its source, or re-capture "
                    "it" % (session.dump["size"], session.dump["expected_size"])
                    if session.dump.get("truncated")
                    else "check that vmlinux matches the dump; dumps_list shows both"
                )
                raise AgentError(protocol.CRASH_FAILED, str(exc) + " (--minimal failed too)", hint=hint) from None
            except OSError as exc:
                self.close(session.id)
                raise AgentError(
                    protocol.CRASH_FAILED, "cannot run %s: %s" % (binary, exc), hint="install crash on this host"
                ) from None
            if self._closed.is_set() or session.id not in self.by_id:  # closed while starting
                crash.close()
                raise AgentError(protocol.UNKNOWN_SESSION, "session %s was closed while crash started" % session.id)
            session.crash = crash
            session.banner = started.get("banner") or ""
            if started.get("note"):
                session.notes.append(started["note"])
            return started

    def drgn(
        self,
        session: Session,
        chosen: Dict[str, Any],
        worker: str,
        env: Dict[str, str],
        setup: Callable[[], Optional[Callable[[], None]]],
        code_group: Any = None,
    ) -> DrgnWorker:
        """`chosen`: drgn_pick.choose()'s answer (interpreter, version, features); `setup()` gives
        the sandbox's preexec, made only when a worker starts; `code_group`: the cgroup its code
        process is moved into."""
        if session.drgn is None or session.drgn.proc is None:
            preexec = setup()
            drgn = DrgnWorker(
                str(chosen["python"]),
                worker,
                session.vmcore,
                session.vmlinux,
                session.workdir,
                env,
                preexec,
                code_group,
            )
            try:
                drgn.start()
            except DrgnError as exc:
                raise _drgn_failed(session, chosen, exc) from None
            session.drgn = drgn
        return session.drgn

    def close(self, sid: str) -> Dict[str, Any]:
        with self._lock:
            session = self.by_id.pop(sid, None)
            if session is None:
                raise AgentError(
                    protocol.UNKNOWN_SESSION,
                    "no dump session %r on this host" % sid,
                    hint="sessions_list shows the open ones",
                )
            self.by_key.pop((session.vmcore, session.vmlinux), None)
        info = session.info()
        session.close()
        return info

    def list(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [s.info() for s in self.by_id.values()]

    def close_all(self) -> None:
        self._closed.set()
        for sid in list(self.by_id):
            try:
                self.close(sid)
            except AgentError:
                pass

    def _reap(self) -> None:
        while not self._closed.wait(self.reap_every):
            now = time.time()
            for session in list(self.by_id.values()):
                busy = (
                    session.opening.locked()
                    or session.drgn_lock.locked()
                    or (session.crash is not None and session.crash.lock.locked())
                )
                if not busy and now - session.last_used > self.idle:
                    try:
                        self.close(session.id)
                    except AgentError:
                        pass


def _drgn_failed(session: Session, chosen: Dict[str, Any], exc: DrgnError) -> AgentError:
    fmt, python = session.dump.get("format"), chosen["python"]
    old = drgn_pick.too_old(chosen, fmt, str(exc).split(": ", 1)[-1])
    if old and "could not open the dump" in str(exc):
        return AgentError(protocol.DRGN_TOO_OLD, old, hint=drgn_pick.INSTALL_HINT)
    if fmt != "elf" and "could not open the dump" in str(exc):
        # drgn reads these through libkdumpfile, which needs what QEMU's and some kdump's files lack
        return AgentError(
            protocol.DRGN_UNSUPPORTED,
            "drgn cannot read this %s dump %s (%s); crash reads it"
            % (fmt, session.vmcore, str(exc).split(": ", 1)[-1]),
            hint="use crash_run on this session; drgn needs an ELF vmcore (have kdump write "
            "ELF, makedumpfile -E, for the next dumps)",
        )
    return AgentError(
        protocol.DRGN_FAILED,
        str(exc),
        hint="is drgn importable by %s? (pip install drgn; policy key drgn_python picks the interpreter)" % python,
    )
