"""The agent's end of a drgn worker: start it, send code, read its answer within its caps.

The worker (drgn_worker.py) has two channels: the trusted one (its stdin/stdout), where the
agent's own queries and the bundled scripts run in a process no caller's code ever ran in, and
the code channel (two pipes of its own), served by the forked process that keeps callers'
persistent namespace. What comes back is read line by line (bounded.LineReader: each line at
most LINE_CAP bytes, scanned once) and streamed into the caller's sink, at most `max_bytes`
per call; a worker over a cap, past its time or gone is killed whole, and DrgnError says why
(`cap`: timeout, line, output, idle, memory, died).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import Any, Callable, Dict, List, Optional

from ..bounded import CapExceeded, LineReader
from ..cgroups import Group

START_TIMEOUT = 120.0
LINE_CAP = 1 << 20  # bytes of one answer line (the worker sends 16 Ki characters a line)
IDLE_CAP = 1 << 20  # bytes the code channel may hold between calls (a thread of earlier code writing)
INTERNAL_CAP = 16 << 20  # bytes of output kept for a caller without a sink (the agent's own queries)
ERR_TAIL = 4096
ALIVE_EVERY = 0.5  # seconds between checks that the answering process is alive while a call runs
Sink = Callable[[bytes], None]


class DrgnError(Exception):
    def __init__(self, message: str, cap: str = "died") -> None:
        super().__init__(message)
        self.cap = cap


class _Channel:
    """One request pipe and one answer pipe."""

    def __init__(self, requests: int, answers: int) -> None:
        self.requests = requests
        self.reader = LineReader(answers, LINE_CAP)
        self.answers = answers

    def send(self, message: Dict[str, Any]) -> None:
        data = json.dumps(message).encode() + b"\n"
        view = memoryview(data)
        while view:
            view = view[os.write(self.requests, view) :]

    def close(self) -> None:
        for fd in (self.requests, self.answers):
            try:
                os.close(fd)
            except OSError:
                pass


class DrgnWorker:
    def __init__(
        self,
        python: str,
        source: str,
        vmcore: str,
        vmlinux: str,
        workdir: str,
        env: Dict[str, str],
        preexec: Optional[Callable[[], None]] = None,
        code_group: Optional[Callable[[], Optional[Group]]] = None,
    ) -> None:
        """The worker's source goes on the command line (`python -I -c`): no script file that
        someone could have planted or changed runs as root. `code_group` gives the cgroup the
        code process is moved into (its session's drgn-code group), or None."""
        self.argv = [python, "-I", "-c", source, vmcore, vmlinux]  # + the code channel's fds, at start
        self.workdir, self.env, self.preexec, self.code_group = workdir, env, preexec, code_group
        self.proc: Optional[subprocess.Popen] = None  # type: ignore[type-arg]
        self.ready: Dict[str, Any] = {}
        self.code_ready: Dict[str, Any] = {}
        self.code_pid: Optional[int] = None
        self.groups: List[Group] = []  # the worker's cgroup and its code process's: their OOM kills
        self._events: Dict[str, int] = {}
        self._trusted: Optional[_Channel] = None
        self._code: Optional[_Channel] = None

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> Dict[str, Any]:
        code_in, to_code = os.pipe()
        from_code, code_out = os.pipe()
        argv = self.argv + [str(code_in), str(code_out)]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=self.workdir,
                env=self.env,
                start_new_session=True,
                close_fds=True,
                pass_fds=(code_in, code_out),
                preexec_fn=self.preexec,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            for fd in (to_code, from_code):
                os.close(fd)
            raise DrgnError("cannot start the drgn worker with %s: %s" % (self.argv[0], exc)) from None
        finally:
            os.close(code_in)
            os.close(code_out)
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self._trusted = _Channel(proc.stdin.fileno(), proc.stdout.fileno())
        self._code = _Channel(to_code, from_code)
        own = getattr(self.preexec, "group", None)
        self.groups = [own] if own is not None else []
        deadline = time.monotonic() + START_TIMEOUT
        self.ready = self._ready(self._trusted, deadline)
        self.code_ready = self._ready(self._code, deadline)
        self._place_code_process()
        self._events = self._counted()
        return self.ready

    def _ready(self, channel: _Channel, deadline: float) -> Dict[str, Any]:
        try:
            line = channel.reader.readline(deadline)
            ready = json.loads(line) if line else {"ready": False, "error": "the worker exited at start"}
        except (CapExceeded, ValueError) as exc:
            ready = {"ready": False, "error": "a broken start: %s" % exc}
        if not ready.get("ready"):
            self.close()
            raise DrgnError("drgn could not open the dump: %s" % ready.get("error"))
        return dict(ready)

    def _place_code_process(self) -> None:
        """Before any code runs: the code process (the deepest of the worker's processes: waiter,
        worker, code process) first in line for the OOM killer, and into its own cgroup
        (CPU-bounded, apart from the trusted worker's) when it has one."""
        if self.proc is None:
            return
        pid = self.proc.pid
        while _children(pid):
            pid = _children(pid)[0]
        if pid == self.proc.pid:
            return
        self.code_pid = pid
        try:
            with open("/proc/%d/oom_score_adj" % pid, "w") as handle:
                handle.write("1000")
        except OSError:
            pass  # not root: the worker set it itself where it could
        group = self.code_group() if self.code_group is not None and self.groups else None
        if group is not None:
            for procs in group.procs():
                with open(procs, "w") as handle:
                    handle.write(str(pid))
            self.groups.append(group)

    def _counted(self) -> Dict[str, int]:
        total: Dict[str, int] = {}
        for group in self.groups:
            for key, value in group.events().items():
                total[key] = total.get(key, 0) + value
        return total

    def call(
        self,
        code: str,
        timeout: float,
        fresh: bool = False,
        args: Optional[List[str]] = None,
        trusted: bool = False,
        sink: Optional[Sink] = None,
        max_bytes: int = INTERNAL_CAP,
    ) -> Dict[str, Any]:
        """Run code on the trusted channel (the agent's queries, bundled scripts) or the code
        channel (callers' code); its output goes to `sink` (kept in "stdout" without one). A worker
        that goes over a cap or past `timeout` is killed (its namespace is lost): DrgnError."""
        channel = self._trusted if trusted else self._code
        if self.proc is None or self.proc.poll() is not None or channel is None:
            raise DrgnError("the drgn worker is not running")
        kept: List[bytes] = []
        answer = {"ok": False, "value": None, "stderr": ""}
        try:
            channel.reader.drain(IDLE_CAP)
            ident = os.urandom(8).hex()
            channel.send({"id": ident, "code": code, "fresh": fresh, "args": args or []})
            answer = self._read(channel, ident, timeout, sink, kept, max_bytes)
        except CapExceeded as exc:
            self.close()
            raise DrgnError("the drgn code %s; the worker was stopped" % exc, exc.cap) from None
        except OSError as exc:
            raise self._died("the drgn worker died: %s" % exc) from None
        if sink is None:
            answer["stdout"] = b"".join(kept).decode("utf-8", "replace")
        return answer

    def _read(
        self, channel: _Channel, ident: str, timeout: float, sink: Optional[Sink], kept: List[bytes], max_bytes: int
    ) -> Dict[str, Any]:
        """The call's answer lines: output parts to `sink` (or stdout's into `kept`), then its end."""
        deadline = time.monotonic() + timeout
        written, err = 0, b""
        volume = channel.reader.volume + max_bytes * 2 + IDLE_CAP  # all it may send: its output, escaped
        while True:
            if channel.reader.volume > volume:
                raise CapExceeded("output", "sent over %d bytes in one call" % (max_bytes * 2 + IDLE_CAP))
            line = channel.reader.readline(min(deadline, time.monotonic() + ALIVE_EVERY))
            if line is None:
                if channel.reader.eof or not self._alive(channel):
                    raise self._died("the drgn code killed the worker")
                if time.monotonic() < deadline:
                    continue
                self.close()
                raise DrgnError("the drgn code ran over %gs; the worker was stopped" % timeout, "timeout")
            message = _message(line)
            if message is None or message.get("id") != ident:
                continue  # not an answer to this call (code writing to its channel): dropped, counted
            if message.get("done"):
                return {"ok": bool(message.get("ok")), "value": message.get("value_head"), "stderr": err.decode()}
            data = str(message.get("text") or "").encode("utf-8", "replace")
            written += len(data)
            if written > max_bytes:
                data = data[: max(0, len(data) - (written - max_bytes))]
            if sink is not None:
                sink(data)
            elif message.get("part") == "out":
                kept.append(data)
            if written > max_bytes:
                raise CapExceeded("output", "wrote over %d bytes of output" % max_bytes)
            if message.get("part") == "err":
                err = (err + data)[-ERR_TAIL:]

    def _alive(self, channel: _Channel) -> bool:
        """Whether the process answering on `channel` is still there: its pipe may stay open in
        processes it forked, so EOF alone does not tell."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        if channel is self._code and self.code_pid is not None:
            return _running(self.code_pid)
        return True

    def _died(self, message: str) -> DrgnError:
        """The worker ended under a call: which budget ended it, from its cgroups' counters."""
        after = self._counted()
        self.close()
        if after.get("oom_kill", 0) > self._events.get("oom_kill", 0):
            return DrgnError(message + ": it reached its memory budget (the kernel's OOM killer ended it)", "memory")
        return DrgnError(message, "died")

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        for channel in (self._trusted, self._code):
            if channel is not None:
                channel.close()
        self._trusted = self._code = None


def _message(line: bytes) -> Optional[Dict[str, Any]]:
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def _running(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def _children(pid: int) -> List[int]:
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
            return [int(p) for p in handle.read().split()]
    except (OSError, ValueError):
        return []
