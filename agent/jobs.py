"""Long-running work as jobs: one process group each, output into the store.

Every child runs in its own session (process group) so cancel and shutdown can
kill it with everything it started; nothing outlives the agent.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import json
import os
import signal
import subprocess
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, TypeVar, cast

from . import cgroups, protocol, sandbox
from .bounded import Lines
from .errors import AgentError
from .policy import DEFAULTS
from .rpc import current_request_id

Notify = Callable[[str, Dict[str, Any]], None]
PROGRESS_EVERY = 0.5  # seconds between progress notifications of one job
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
STDERR_TAIL = 4096
KEPT_PAST_CAP = 4 << 20  # bytes of wanted lines (e.g. bpftrace's final maps) still written past a cap
F = TypeVar("F", bound=Callable[..., "Job"])


def _counted(method: F) -> F:
    """Start a job only within the max_jobs quota (JobManager._slot)."""

    @functools.wraps(method)
    def wrapper(self: JobManager, *args: Any, **kwargs: Any) -> Job:
        with self._slot():
            return method(self, *args, **kwargs)

    return cast(F, wrapper)


class Job:
    """One process and the output it is writing."""

    def __init__(
        self, job_id: str, kind: str, argv: List[str], writer: Any, duration: Optional[float], meta: Dict[str, Any]
    ) -> None:
        self.id = job_id
        self.kind = kind
        self.argv = argv
        self.writer = writer
        self.output_id: str = writer.output_id
        self.duration = duration
        self.meta = meta
        self.state = "running"
        self.started = time.time()
        self.ended: Optional[float] = None
        self.exit_status: Optional[int] = None
        self.result: Dict[str, Any] = {}
        self.stderr: Deque[bytes] = deque()
        self.stderr_len = 0
        self.proc: Optional[subprocess.Popen] = None  # type: ignore[type-arg]
        self.done = threading.Event()
        self.stop_reason: Optional[str] = None
        self.max_output: Optional[int] = None
        self.keep_past_cap: Optional[Callable[[bytes], bool]] = None
        self.stopper: Optional[Callable[[], None]] = None  # a job that is not a process: how to stop it
        self.preexec: Any = None  # its sandbox (sandbox.Setup): the cgroup to read and release at its end

    def stderr_tail(self) -> str:
        return b"".join(self.stderr).decode("utf-8", "replace")[-STDERR_TAIL:]

    def status(self) -> Dict[str, Any]:
        end = self.ended or time.time()
        status = {
            "job_id": self.id,
            "kind": self.kind,
            "state": self.state,
            "output_id": self.output_id,
            "started": self.started,
            "elapsed": round(end - self.started, 3),
            "exit_status": self.exit_status,
            "meta": self.meta,
        }
        status.update(self.result)
        if self.state != "running":
            status["stderr_tail"] = self.stderr_tail()
        return status


class JobManager:
    """Starts, watches, cancels and reaps jobs."""

    def __init__(
        self,
        store: Any,
        notify: Notify,
        workdir: str,
        max_jobs: int = DEFAULTS["max_jobs"],
        table: Optional[str] = None,
    ) -> None:
        self.store = store
        self.notify = notify
        self.workdir = workdir
        self.max_jobs = max_jobs
        self._starting = 0  # jobs past the quota check, not yet registered
        self.jobs: Dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._instance = os.urandom(2).hex()  # ids of a later agent in this dir never collide with ours
        self._lock = threading.Lock()
        self._closing = False
        self.table = JobTable(table) if table else None
        self.on_shutdown: List[Callable[[], None]] = []  # domains' own children (crash sessions...)

    @_counted
    def start(
        self,
        kind: str,
        argv: List[str],
        duration: Optional[float] = None,
        env: Optional[Dict[str, str]] = None,
        meta: Optional[Dict[str, Any]] = None,
        max_output: Optional[int] = None,
        keep_past_cap: Optional[Callable[[bytes], bool]] = None,
        preexec: Optional[Callable[[], None]] = None,
    ) -> Job:
        """Run argv (never through a shell) with output into a new store entry; `preexec` is the
        sandbox (sandbox.child_setup) the child enters before exec.

        With `max_output`, the job is stopped once it has written that many bytes; past
        that, only the lines `keep_past_cap` accepts are still written (up to KEPT_PAST_CAP)."""
        if self._closing:
            raise AgentError(protocol.SHUTTING_DOWN, "the agent is shutting down")
        writer = self.store.create(kind, {"argv": argv, **(meta or {})})
        job = Job(self._new_id(), kind, argv, writer, duration, meta or {})
        job.max_output, job.keep_past_cap, job.preexec = max_output, keep_past_cap, preexec
        try:
            job.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.workdir,
                env=env if env is not None else _clean_env(),
                start_new_session=True,
                close_fds=True,
                preexec_fn=preexec,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            writer.close(error=str(exc))
            sandbox.release(preexec)
            raise AgentError(
                protocol.EXEC_FAILED,
                "cannot start %s: %s" % (argv[0], getattr(exc, "strerror", None) or exc),
                hint="is %s installed on this host?" % os.path.basename(argv[0]),
            ) from None
        with self._lock:
            self.jobs[job.id] = job
        self._announce(job)
        threading.Thread(target=self._drain_stderr, args=(job,), daemon=True).start()
        threading.Thread(target=self._pump, args=(job,), daemon=True).start()
        if duration:
            timer = threading.Timer(duration, self._stop, args=(job, "done", "duration reached"))
            timer.daemon = True
            timer.start()
        return job

    @_counted
    def adopt(self, kind: str, meta: Dict[str, Any], stopper: Callable[[], None]) -> Job:
        """A job done by the caller's own thread (e.g. a command in a crash session): it writes
        into job.writer and calls finish(); cancel and shutdown call stopper()."""
        if self._closing:
            raise AgentError(protocol.SHUTTING_DOWN, "the agent is shutting down")
        job = Job(self._new_id(), kind, [], self.store.create(kind, meta), None, meta)
        job.stopper = stopper
        with self._lock:
            self.jobs[job.id] = job
        self._announce(job)
        return job

    def _new_id(self) -> str:
        return "j%d-%s" % (next(self._ids), self._instance)

    def running(self) -> int:
        with self._lock:
            return sum(1 for job in self.jobs.values() if job.state == "running")

    def _record(self, job: Job) -> None:
        if self.table is not None:
            self.table.record(job.status())

    def _announce(self, job: Job) -> None:
        """Say which request started the job: if the link drops before the answer, the controller
        still knows the job's id and can reattach to it."""
        self._record(job)
        self.notify(
            protocol.JOB_STARTED,
            {"job_id": job.id, "request": current_request_id(), "output_id": job.output_id, "kind": job.kind},
        )

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        """Hold a place among max_jobs while a job starts: concurrent starts cannot overshoot."""
        with self._lock:
            running = sum(1 for job in self.jobs.values() if job.state == "running") + self._starting
            if running >= self.max_jobs:
                raise AgentError(
                    protocol.QUOTA_EXCEEDED,
                    "%d jobs are running on this host, its cap (policy max_jobs)" % running,
                    rule="quota.jobs",
                    hint="wait for one to end or cancel one (job_cancel); job_status lists them",
                )
            self._starting += 1
        try:
            yield
        finally:
            with self._lock:
                self._starting -= 1

    def finish(self, job: Job, exit_status: int) -> None:
        """The end of an adopted job."""
        job.exit_status = exit_status
        self._finish(job)

    def get(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            old = self.table.lost(job_id) if self.table is not None else None
            if old is not None:
                raise AgentError(
                    protocol.JOB_LOST,
                    old["message"],
                    hint="its output so far is kept: output_page reads it",
                    output_id=old.get("output_id"),
                )
            raise AgentError(
                protocol.UNKNOWN_JOB,
                "no job %r on this host" % job_id,
                hint="jobs.list shows the jobs this agent knows",
            )
        return job

    def wait(self, job: Job, timeout: float) -> bool:
        return job.done.wait(max(0.0, timeout))

    def cancel(self, job_id: str) -> Dict[str, Any]:
        job = self.get(job_id)
        if job.state == "running":
            self._stop(job, "cancelled", "cancelled by request")
            job.done.wait(KILL_GRACE + 3)
        return job.status()

    def stop(self, job: Job, reason: str) -> None:
        """End a job early but normally (its output is complete so far): state done, with the reason."""
        if job.state == "running":
            self._stop(job, "done", reason)

    def list(self) -> List[Dict[str, Any]]:
        with self._lock:
            return [job.status() for job in self.jobs.values()]

    def shutdown(self, reason: str = "the agent is shutting down") -> None:
        """Kill every job's process group and wait for them: no orphans."""
        self._closing = True
        with self._lock:
            running = [job for job in self.jobs.values() if job.state == "running"]
        for job in running:
            self._stop(job, "aborted", reason)
        for job in running:
            job.done.wait(KILL_GRACE + 3)
        for hook in self.on_shutdown:
            hook()
        cgroups.close()  # what is left in the children's cgroups, and the cgroups themselves

    def _stop(self, job: Job, state: str, reason: str) -> None:
        if (job.proc is None and job.stopper is None) or job.done.is_set() or job.stop_reason:
            return
        job.stop_reason = reason
        job.state = state
        if job.proc is None:
            if job.stopper is not None:
                job.stopper()
            return
        _signal_group(job.proc.pid, signal.SIGTERM)
        try:
            job.proc.wait(KILL_GRACE)
        except subprocess.TimeoutExpired:
            pass
        # The leader may be gone while its children linger: kill the group regardless.
        _signal_group(job.proc.pid, signal.SIGKILL)

    def _drain_stderr(self, job: Job) -> None:
        assert job.proc is not None and job.proc.stderr is not None
        stream: Any = job.proc.stderr  # a BufferedReader: read1 returns what is there, no waiting for more
        for chunk in iter(lambda: stream.read1(4096), b""):
            job.stderr.append(chunk)
            job.stderr_len += len(chunk)
            while job.stderr_len - len(job.stderr[0]) >= STDERR_TAIL and len(job.stderr) > 1:
                job.stderr_len -= len(job.stderr.popleft())

    def _pump(self, job: Job) -> None:
        assert job.proc is not None and job.proc.stdout is not None
        stream: Any = job.proc.stdout
        last = 0.0
        written, capped = 0, False
        past = _PastCap(job)
        for chunk in iter(lambda: stream.read1(65536), b""):
            if capped:
                past.feed(chunk)  # keep draining so the process is never blocked on a full pipe
                continue
            if job.max_output is not None and written + len(chunk) > job.max_output:
                self._over_cap(job, chunk[: job.max_output - written], job.max_output)
                past.feed(chunk[job.max_output - written :])
                capped = True
                continue
            written += len(chunk)
            job.writer.write(chunk)
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY:
                last = now
                self.notify(
                    protocol.JOB_PROGRESS,
                    {
                        "job_id": job.id,
                        "output_id": job.output_id,
                        "elapsed": round(time.time() - job.started, 3),
                        "bytes": written,
                    },
                )
        if capped:
            past.feed(b"\n")  # a last line without its newline
        job.exit_status = job.proc.wait()
        _signal_group(job.proc.pid, signal.SIGKILL)  # reap stragglers that kept no pipe open
        job.stop_reason = _budget_hit(job.preexec) or job.stop_reason
        sandbox.release(job.preexec)
        self._finish(job)

    def _over_cap(self, job: Job, head: bytes, cap: int) -> None:
        """Over the job's output cap: keep what fits, say so, stop the job."""
        job.writer.write(head + b"\n[crashfleet: output cap of %d bytes reached; job stopped]\n" % cap)
        threading.Thread(
            target=self._stop, args=(job, "done", "output cap of %d bytes reached" % cap), daemon=True
        ).start()

    def _finish(self, job: Job) -> None:
        if job.state == "running":
            job.state = "done" if job.exit_status == 0 else "failed"
        error = None if job.state in ("done", "cancelled") else "exit status %s" % job.exit_status
        meta = job.writer.close(exit_status=job.exit_status, error=error)
        job.ended = time.time()
        job.result = {
            "lines": meta.get("lines"),
            "bytes": meta.get("bytes"),
            "sha256": meta.get("sha256"),
            "truncated": meta.get("truncated"),
            "stop_reason": job.stop_reason,
        }
        self._record(job)  # before done is set: shutdown waits on done, then the process ends
        job.done.set()
        self.notify(protocol.JOB_DONE, job.status())


class JobTable:
    """The agent's jobs on disk (DIR/jobs.json): a later agent can tell what became of them.
    Small on purpose (it is rewritten at every job start and end): every running job, and the
    newest KEEP finished ones of this agent and of the one before."""

    KEEP = 32

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: Dict[str, Dict[str, Any]] = {}
        self._previous = self._load()

    def _load(self) -> Dict[str, Dict[str, Any]]:
        try:
            with open(self.path) as handle:
                data = json.load(handle)
            return {str(k): v for k, v in data.get("jobs", {}).items() if isinstance(v, dict)}
        except (OSError, ValueError, AttributeError):
            return {}

    def record(self, status: Dict[str, Any]) -> None:
        entry = {
            k: status.get(k) for k in ("job_id", "kind", "state", "output_id", "started", "exit_status", "stop_reason")
        }
        entry["pid"] = os.getpid()
        with self._lock:
            self._entries.pop(str(entry["job_id"]), None)
            self._entries[str(entry["job_id"])] = entry  # newest last
            finished = [k for k, v in self._entries.items() if v["state"] != "running"]
            for key in finished[: -self.KEEP]:
                del self._entries[key]
            try:
                self._write()
            except OSError:
                pass  # the table is a courtesy: a full disk must not fail the job

    def _write(self) -> None:
        """Merge ours into what is on disk, under a lock: agents of other controllers may share
        this dir and write it too; theirs stay (running ones all, finished ones the newest)."""
        with open(self.path + ".lock", "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            others = [(k, v) for k, v in self._load().items() if v.get("pid") != os.getpid()]
            kept = [(k, v) for k, v in others if v.get("state") == "running"]
            kept += [(k, v) for k, v in others if v.get("state") != "running"][-self.KEEP :]
            merged = dict(kept, **self._entries)
            tmp = "%s.%d.tmp" % (self.path, os.getpid())
            with open(tmp, "w") as handle:
                json.dump({"jobs": merged}, handle, separators=(",", ":"))
            os.replace(tmp, self.path)

    def lost(self, job_id: str) -> Optional[Dict[str, Any]]:
        """A job of an earlier agent in this dir, described for the one who asks after it."""
        old = self._previous.get(job_id)
        if old is None:
            return None
        ended = old.get("stop_reason") or "its agent (pid %s) died while it ran" % old.get("pid")
        state = old.get("state")
        message = (
            "job %s ended with an earlier agent on this host: %s" % (job_id, ended)
            if state == "running" or state == "aborted"
            else "job %s was run by an earlier agent on this host and ended (%s, exit status %s)"
            % (job_id, state, old.get("exit_status"))
        )
        return {"message": message, "output_id": old.get("output_id")}


class _PastCap:
    """Output past a job's cap: dropped, except whole lines the job asked to keep (split in linear
    time: a line is never rescanned, and one longer than KEPT_PAST_CAP keeps only its head)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.lines = Lines(KEPT_PAST_CAP)
        self.kept = 0

    def feed(self, chunk: bytes) -> None:
        keep = self.job.keep_past_cap
        if keep is None:
            return
        for line in self.lines.feed(chunk):
            if self.kept + len(line) < KEPT_PAST_CAP and keep(line):
                self.job.writer.write(line + b"\n")
                self.kept += len(line) + 1


def _budget_hit(preexec: Any) -> Optional[str]:
    """What ended a job whose cgroup's budget was reached, from the cgroup's counters."""
    group = getattr(preexec, "group", None)
    if group is None or not group.events().get("oom_kill"):
        return None
    return "its memory budget was reached (the kernel's OOM killer ended it; policy sandbox_tool_memory_bytes)"


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _clean_env() -> Dict[str, str]:
    """A minimal, predictable environment: no pager, C locale, sbin on PATH."""
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PAGER": "cat",
        "SYSTEMD_PAGER": "",
        "TERM": "dumb",
        "HOME": os.environ.get("HOME", "/"),
    }
