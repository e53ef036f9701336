"""Kernel crash dumps: discovery, vmlinux matching, crash and drgn sessions, analysis scripts.

RPC methods (see `methods`); the agent enforces the policy keys dump_dirs,
vmlinux_dirs, drgn_code, drgn_python, max_dump_sessions and dump_session_idle.
"""

from __future__ import annotations

import functools
import os
import pkgutil
import platform
import shutil
import threading
from typing import Any, Callable, Dict, List, Optional

from .. import cgroups, profiles, protocol, regexbox, sandbox
from ..domains.dumps import describe_script
from ..errors import AgentError
from ..jobs import _clean_env
from ..params import bounded, param
from . import debuginfod, discovery, drgn_pick, drift, formats, live, modules, pipes, triage, vmlinux
from .drgn_client import DrgnError
from .sessions import Session, Sessions

SCRIPTS = ("panic_summary", "dstate_stacks", "memory_summary", "top_rss")
COMMAND_TIMEOUT = 60.0
BUSY_WAIT = 10.0
VALUE_CHARS = 4000
MAX_WAIT = 120.0  # seconds a crash_run may wait before it answers with a job


class Dumps:
    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.policy = agent.policy
        settings = self.policy.settings
        self.sessions = Sessions(
            agent.base_dir, int(settings["max_dump_sessions"]), float(settings["dump_session_idle"])
        )
        agent.jobs.on_shutdown.append(self.sessions.close_all)
        self.debuginfod = debuginfod.Debuginfod(agent)

    # -- discovery

    def roots(self) -> List[str]:
        return discovery.allowed_roots(self.policy.settings["dump_dirs"])

    def dirs(self, params: Dict[str, Any]) -> List[str]:
        dirs = param(params, "dirs", list, None)
        if dirs is None:
            return self.roots()
        if not all(isinstance(d, str) and os.path.isabs(d) for d in dirs):
            raise AgentError(protocol.BAD_PARAMS, "dirs must be absolute paths, got %r" % (dirs,))
        return list(dirs)

    def list(self, params: Dict[str, Any]) -> Dict[str, Any]:
        found = discovery.scan(self.dirs(params), self.roots())
        extra = self.policy.settings["vmlinux_dirs"]
        standard = bool(self.policy.settings["vmlinux_standard_dirs"])
        for dump in found["dumps"]:
            dump["debuginfo"] = vmlinux.debuginfo_status(dump, extra, standard)
            if not dump["debuginfo"]["present"]:
                dump["debuginfo"] = self.debuginfod.status(dump) or dump["debuginfo"]
        found["allowed"] = self.roots()
        found["drgn"] = drgn_pick.public(self.chosen_drgn())
        found["crash"] = shutil.which("crash", path=_clean_env()["PATH"]) is not None
        return found

    def dump(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """The dump named by `vmcore`, the newest one in the dirs, or the live kernel (`live`)."""
        if param(params, "live", bool, False):
            live.check(self.policy.settings)
            return live.dump()
        path = param(params, "vmcore", str, None)
        if path is None:
            found = discovery.scan(self.dirs(params), self.roots())["dumps"]
            if not found:
                raise AgentError(
                    protocol.NO_DUMP,
                    "no dump in %s" % ", ".join(self.dirs(params)),
                    hint="dumps_list shows where the agent looks (policy key dump_dirs)",
                )
            newest: Dict[str, Any] = found[0]
            return newest
        real = discovery.check_allowed(path, self.roots())
        if not os.path.isfile(real):
            raise AgentError(protocol.NOT_FOUND, "no dump at %s" % path, hint="dumps_list shows the dumps on this host")
        info = discovery.describe(real)
        if info is None:
            raise AgentError(
                protocol.NOT_A_DUMP,
                "%s is not a kernel dump (not ELF, kdump-compressed or flattened)" % path,
                hint="pass a vmcore as dumps_list reports it",
            )
        return info

    # -- sessions

    def open(self, params: Dict[str, Any]) -> Dict[str, Any]:
        dump = self.dump(params)
        binary = crash_binary(dump)
        linux = self._vmlinux(params, dump)
        if isinstance(linux, dict):
            return linux  # a debuginfod download is running: open again to wait for it
        session, reused = self.sessions.get_or_create(dump, linux)
        self._budget(session)
        if dump.get("live"):
            return self._open_live(params, dump, binary, session, reused)
        if param(params, "modules", bool, False):
            pending = self._fetch_modules(session, params)
            if pending is not None:
                return pending  # a module's download is running: open again to wait for it
        reused = reused and session.crash is not None  # one that waited for its modules is new
        self._start_crash(session, binary)
        minimal = session.crash is not None and session.crash.minimal
        command = "log | tail -n 40" if minimal else "sys"  # `sys` needs crash's full init
        if dump.get("truncated") and not reused:
            session.notes.append(
                "the dump is cut short: %d of the %d bytes its headers describe (an "
                "interrupted write?)" % (dump["size"], dump["expected_size"])
            )
        summary = self.crash(dict(params, session_id=session.id, command=command, timeout=60))
        self._check_drift(session, summary["page"]["text"])
        result = session.info()
        result.update(reused=reused, notes=session.notes, warnings=session.warnings, command=command)
        result.update(summary)
        if param(params, "modules", bool, False) and session.modules is None:
            result["notes"] = session.notes + [
                "modules: this session was opened without modules=true and "
                "crash reads only what it was started with: session_close, "
                "then crash_open with modules=true"
            ]
        if session.modules is not None and session.crash is not None:
            errors = session.crash.module_errors
            result["modules"] = {
                "loaded": [n for n, _ in session.modules.files if n not in errors],
                "failed": dict(errors),
            }
        return result

    def _budget(self, session: Session) -> None:
        """The session's cgroup (its memory budget, shared by its crash, drgn and drgn code)."""
        tree = cgroups.tree() if self.policy.settings.get("sandbox", True) else None
        if session.group is None and tree is not None:
            session.group = ("session-" + session.id,)
            tree.group(session.group, profiles.session_budget(self.policy))

    def _fetch_modules(self, session: Session, params: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        """Before crash starts: the modules' debuginfo files, listed by drgn and fetched by build id
        (a dict while a download runs). A failed fetch closes the session and says which module."""
        if session.crash is not None:
            return None  # started already: its read set is fixed
        servers = self.debuginfod.servers()
        if session.modules is None:
            session.modules = self._list_modules(session, servers)
        try:
            pending = session.modules.advance(
                self.debuginfod, servers, bounded(params, "fetch_wait", 0.0, 0.0, MAX_WAIT)
            )
        except AgentError:
            self.sessions.close(session.id)  # its drgn worker too: nothing is left running
            raise
        if pending is None:  # once: crash starts next, and a later open returns above
            session.notes += session.modules.notes
        return pending

    def _list_modules(self, session: Session, servers: List[str]) -> modules.Plan:
        if not servers:
            plan = modules.Plan([])
            plan.notes.append("modules: no debuginfod server configured (policy debuginfod_urls): none fetched")
            return plan
        with session.drgn_lock:
            try:
                answer = self.drgn_worker(session).call(modules.LIST_CODE, COMMAND_TIMEOUT, trusted=True)
                return modules.Plan(modules.parse(answer))
            except AgentError as exc:
                why = exc.message
            except (DrgnError, ValueError) as exc:
                why = str(exc)
        plan = modules.Plan([])
        plan.notes.append("modules: drgn could not list the dump's modules, none fetched (%s)" % why[:300])
        return plan

    def _start_crash(self, session: Session, binary: str) -> None:
        files = [path for _, path in session.modules.files] if session.modules is not None else []
        profile = profiles.crash(self.policy, session.vmlinux, session.vmcore, session.workdir, files, session.group)
        self.sessions.start_crash(
            session, binary, _clean_env(), functools.partial(sandbox.child_setup, self.policy.settings, profile, binary)
        )

    def _open_live(
        self, params: Dict[str, Any], dump: Dict[str, Any], binary: str, session: Session, reused: bool
    ) -> Dict[str, Any]:
        """The live kernel: drgn first (it reads /proc/kcore reliably), crash where it can. crash
        8.0.2 cannot read Debian 12's live 6.1 kernel (it crashes at `sys`): the session then has
        drgn only, and says so."""
        if not reused:
            try:
                self._start_crash(session, binary)
            except AgentError as exc:  # start_crash closed the session: a drgn-only one replaces it
                session, _ = self.sessions.get_or_create(dump, session.vmlinux)
                self._budget(session)
                session.notes.append(
                    "crash could not read the live kernel (%s): this session has drgn only "
                    "(drgn_run, analysis_run)" % exc.message[:300]
                )
        summary = self._drgn(
            dict(params, session_id=session.id), live.SUMMARY_CODE, True, None, "live-summary", trusted=True
        )
        result = session.info()
        result.update(reused=reused, notes=session.notes, warnings=session.warnings, command="drgn: live summary")
        result.update(summary)
        return result

    def _vmlinux(self, params: Dict[str, Any], dump: Dict[str, Any]) -> Any:
        """The caller's vmlinux (checked), a local match, or one from debuginfod by build id (a
        dict while that download runs, `fetch_wait` seconds waited for it first)."""
        given = param(params, "vmlinux", str, None)
        if given:
            return vmlinux.check(given, dump)
        try:
            settings = self.policy.settings
            return vmlinux.match(dump, settings["vmlinux_dirs"], bool(settings["vmlinux_standard_dirs"]))["path"]
        except AgentError as exc:
            if exc.kind != protocol.NO_VMLINUX:
                raise
            return self.debuginfod.obtain(dump, exc, bounded(params, "fetch_wait", 0.0, 0.0, MAX_WAIT))

    def _check_drift(self, session: Session, sys_text: str) -> None:
        """Once per session: crash's start-up warnings and task count against drgn's."""
        with session.drgn_lock:
            if session.checked:
                return
            session.checked = True
            if session.crash is None or session.crash.minimal:
                return
            drgn_count = None
            if self.chosen_drgn()["importable"]:
                try:
                    worker = self.drgn_worker(session)
                    answer = worker.call(drift.COUNT_CODE, COMMAND_TIMEOUT, trusted=True)
                    drgn_count = int(answer["value"]) if answer.get("ok") else None
                except AgentError as exc:
                    if exc.kind == protocol.DRGN_TOO_OLD:  # say it at open, not at the first drgn_run
                        session.warnings.append("%s (%s)" % (exc.message, exc.hint))
                except (DrgnError, ValueError, TypeError):
                    pass  # drgn cannot read every dump (kdump-compressed, flattened): crash's word alone
            warning = drift.note(
                drift.crash_warnings(session.banner),
                drift.crash_tasks(sys_text),
                drgn_count,
                session.dump.get("release"),
            )
            if warning:
                session.warnings.append(warning)
            session.touch()

    def crash(self, params: Dict[str, Any]) -> Dict[str, Any]:
        session = self.sessions.get(param(params, "session_id", str))
        command, filters = pipes.parse(param(params, "command", str))
        timeout = bounded(params, "timeout", COMMAND_TIMEOUT, 1, self.policy.max_duration)
        crash = session.crash
        if crash is None:
            raise AgentError(
                protocol.NO_CRASH, "session %s has no crash process" % session.id, hint="open it with crash_open"
            )
        if not crash.take(BUSY_WAIT):
            raise AgentError(
                protocol.BUSY,
                "session %s is still running another command" % session.id,
                hint="one command at a time per session: wait for it (job_status) or stop it (job_cancel)",
            )
        if "wait" in params:
            return self._crash_job(session, crash, command, filters, timeout, params)
        try:
            writer = self.agent.store.create("crash", {"session": session.id, "command": params["command"]})
            try:
                ended = crash.run(command, self.chain(filters), writer.write, timeout, self._max_output())
            finally:
                meta = writer.close(exit_status=0)
        finally:
            crash.lock.release()
            session.touch()
        return self._answer(session, writer.output_id, params, ended, meta, command=params["command"])

    def _crash_job(
        self, session: Session, crash: Any, command: str, filters: List[Any], timeout: float, params: Dict[str, Any]
    ) -> Dict[str, Any]:
        """The command as an agent job (crash.lock held until it ends): its answer if it ends within
        `wait`, else the job to poll (job.status) or cancel (job.cancel interrupts crash)."""
        wait = bounded(params, "wait", 0.0, 0.0, MAX_WAIT)
        try:
            job = self.agent.jobs.adopt("crash", {"session": session.id, "command": params["command"]}, crash.interrupt)
        except AgentError:
            crash.lock.release()
            raise

        def work() -> None:
            ended: Dict[str, Any] = {"ended": "failed"}
            try:
                ended = crash.run(command, self.chain(filters), job.writer.write, timeout, self._max_output())
            except Exception as exc:  # the session was closed under the command
                ended = {"ended": "failed", "note": "the command stopped: %s" % (exc or type(exc).__name__)}
            finally:
                job.meta.update(ended)
                crash.lock.release()
                session.touch()
                self.agent.jobs.finish(job, 0 if ended["ended"] != "failed" else 1)

        threading.Thread(target=work, name="crash-" + job.id, daemon=True).start()
        if not self.agent.jobs.wait(job, wait):
            return {"session_id": session.id, "job_id": job.id, "output_id": job.output_id, "state": "running"}
        ended = {k: job.meta[k] for k in ("ended", "note", "reason", "cap") if k in job.meta}
        return self._answer(session, job.output_id, params, ended, job.result, command=params["command"])

    def _max_output(self) -> int:
        return int(self.policy.settings["max_output_bytes"])

    def chain(self, filters: List[Any]) -> Any:
        """The command's pipes: in the agent, or in a sandboxed child when a grep is a real regex."""
        if not filters:
            return None
        pattern = regexbox.chain_pattern(filters)
        chain = pipes.Chain(filters)
        return chain if pattern is None else regexbox.IsolatedChain(chain, self.policy, pattern)

    def interrupt(self, params: Dict[str, Any]) -> Dict[str, Any]:
        session = self.sessions.get(param(params, "session_id", str))
        running = session.crash is not None and session.crash.lock.locked()
        if running and session.crash is not None:
            session.crash.interrupt()
        return {"session_id": session.id, "interrupted": running}

    def drgn(self, params: Dict[str, Any]) -> Dict[str, Any]:
        if not self.policy.settings["drgn_code"]:
            raise AgentError(
                protocol.POLICY_DENIED,
                "this host's policy forbids running drgn code (drgn_code: false)",
                hint="the bundled analysis scripts still run: analysis_run",
                rule="policy.drgn_code",
            )
        code = param(params, "code", str)
        return self._drgn(params, code, fresh=False, args=None, kind="drgn")

    def scripts(self, params: Dict[str, Any]) -> Dict[str, Any]:
        return {
            "scripts": [{"name": name, "description": describe_script(bundled_script(name))} for name in SCRIPTS],
            "drgn_code": bool(self.policy.settings["drgn_code"]),
        }

    def script(self, params: Dict[str, Any]) -> Dict[str, Any]:
        """A bundled script by name (in the worker's trusted process: no caller's code ran there), or
        one the controller sends (that is drgn code: policy applies, and it runs where drgn code does)."""
        name = param(params, "name", str)
        code = param(params, "code", str, None)
        args = param(params, "args", list, [])
        if code is None:
            if name not in SCRIPTS:
                raise AgentError(
                    protocol.UNKNOWN_SCRIPT, "no analysis script %r" % name, hint="scripts: " + ", ".join(SCRIPTS)
                )
            code = bundled_script(name)
        elif not self.policy.settings["drgn_code"]:
            raise AgentError(
                protocol.POLICY_DENIED,
                "this host's policy forbids drgn code, and %r is not bundled" % name,
                hint="bundled scripts: " + ", ".join(SCRIPTS),
                rule="policy.drgn_code",
            )
        bundled = param(params, "code", str, None) is None
        return self._drgn(params, code, fresh=True, args=[str(a) for a in args], kind="script:" + name, trusted=bundled)

    def _drgn(
        self,
        params: Dict[str, Any],
        code: str,
        fresh: bool,
        args: Optional[List[str]],
        kind: str,
        trusted: bool = False,
    ) -> Dict[str, Any]:
        """Run code in the session's drgn worker, its output streamed into a new output (capped at
        the store's max_output_bytes). `trusted`: the agent's own code or a bundled script, run in
        the worker's process that never ran callers' code."""
        session = self.sessions.get(param(params, "session_id", str))
        timeout = bounded(params, "timeout", COMMAND_TIMEOUT, 1, self.policy.max_duration)
        writer = self.agent.store.create("drgn", {"session": session.id, "kind": kind})
        ended: Dict[str, Any] = {"ended": "done"}
        with session.drgn_lock:
            worker = self.drgn_worker(session)
            try:
                answer = worker.call(
                    code,
                    timeout,
                    fresh=fresh,
                    args=args,
                    trusted=trusted,
                    sink=writer.write,
                    max_bytes=self._max_output(),
                )
            except DrgnError as exc:
                note = "%s; its namespace is lost (the next call starts a new worker)" % exc
                answer, ended = {"ok": False, "stderr": note}, {"ended": "killed", "cap": exc.cap, "note": note}
                writer.write(("[crashfleet: %s]\n" % note).encode())
            session.touch()
        result = self._answer(session, writer.output_id, params, ended, writer.close(), kind=kind)
        value = answer.get("value")
        result.update(
            ok=bool(answer.get("ok")),
            value=value[:VALUE_CHARS] if value else None,
            privileges=worker.ready.get("privileges"),
        )
        if not answer.get("ok"):
            result["error"] = (answer.get("stderr") or "").strip().splitlines()[-1:] or ["failed"]
            result["error"] = result["error"][0]
        return result

    def _answer(
        self,
        session: Session,
        output_id: str,
        params: Dict[str, Any],
        ended: Dict[str, Any],
        meta: Dict[str, Any],
        **extra: Any,
    ) -> Dict[str, Any]:
        page_bytes = bounded(params, "page_bytes", 16000, 256, 100000)
        result = {
            "session_id": session.id,
            "output_id": output_id,
            "lines": meta.get("lines"),
            "bytes": meta.get("bytes"),
            "sha256": meta.get("sha256"),
            "page": self.agent.store.page(output_id, None, max_bytes=page_bytes),
        }
        result.update(ended)
        result.update(extra)
        return result

    # -- drgn plumbing

    def chosen_drgn(self) -> Dict[str, Any]:
        return drgn_pick.choose(self.policy.settings["drgn_python"], self.policy.settings["drgn_venv"])

    def drgn_worker(self, session: Session) -> Any:
        """The session's drgn worker, started in its sandbox when it is not running."""
        chosen = self.chosen_drgn()
        python = str(chosen["python"])
        profile = profiles.drgn(
            self.policy, session.vmlinux, session.vmcore, session.workdir, chosen.get("paths") or [], session.group
        )
        preexec = functools.partial(sandbox.child_setup, self.policy.settings, profile, python)
        return self.sessions.drgn(session, chosen, worker_source(), _clean_env(), preexec, self._code_group(session))

    def _code_group(self, session: Session) -> Any:
        """Where the worker's code process goes: its own cgroup in the session's (CPU-bounded)."""
        group = session.group
        tree = cgroups.tree()
        if group is None or tree is None:
            return None
        return lambda: tree.group(group + ("drgn-code",), profiles.drgn_code_budget(self.policy))


def crash_binary(dump: Dict[str, Any]) -> str:
    """crash for the host's arch; crash-<arch> for a foreign dump when installed."""
    host = formats.canonical_arch(platform.machine())
    arch = dump.get("arch") or host
    name = "crash" if arch == host else "crash-%s" % arch
    path = shutil.which(name, path=_clean_env()["PATH"])
    if path is None:
        hint = (
            "install crash"
            if name == "crash"
            else "build crash for %s (make target=%s) and install it as %s, or open the dump on a %s host"
            % (arch, arch.upper(), name, arch)
        )
        raise AgentError(
            protocol.NO_CRASH,
            "%s is not installed on this host (the dump is %s, the host %s)" % (name, arch, host),
            hint=hint,
        )
    return path


@functools.lru_cache(maxsize=1)
def worker_source() -> str:
    return (pkgutil.get_data(__package__ or "", "drgn_worker.py") or b"").decode()


def drgn_status(python: str) -> Dict[str, Any]:
    """Whether `python` imports drgn, which version, and the dirs it reads (drgn_pick.probe)."""
    return drgn_pick.probe(python)


def bundled_script(name: str) -> str:
    return (pkgutil.get_data(__package__ or "", "scripts/%s.py" % name) or b"").decode()


def methods(agent: Any) -> Dict[str, Callable[[Dict[str, Any]], Any]]:
    dumps = Dumps(agent)
    return {
        protocol.DUMPS_LIST: dumps.list,
        protocol.DUMPS_OPEN: dumps.open,
        protocol.DUMPS_CRASH: dumps.crash,
        protocol.DUMPS_INTERRUPT: dumps.interrupt,
        protocol.DUMPS_DRGN: dumps.drgn,
        protocol.DUMPS_SESSIONS: lambda p: {"sessions": dumps.sessions.list()},
        protocol.DUMPS_CLOSE: lambda p: dumps.sessions.close(param(p, "session_id", str)),
        protocol.DUMPS_SCRIPTS: dumps.scripts,
        protocol.DUMPS_SCRIPT: dumps.script,
        protocol.DUMPS_TRIAGE: lambda p: triage.triage(dumps, p),
    }
