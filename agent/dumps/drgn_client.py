"""The agent's end of a drgn worker: start it, send code, read the answer within a timeout."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from typing import Any, Callable, Dict, List, Optional

START_TIMEOUT = 120.0


class DrgnError(Exception):
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
    ) -> None:
        """The worker's source goes on the command line (`python -I -c`): no script file that
        someone could have planted or changed runs as root."""
        self.argv = [python, "-I", "-c", source, vmcore, vmlinux]
        self.workdir, self.env, self.preexec = workdir, env, preexec
        self.proc: Optional[subprocess.Popen] = None  # type: ignore[type-arg]
        self.ready: Dict[str, Any] = {}
        self._buffer = b""
        self._ids = 0

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> Dict[str, Any]:
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=self.workdir,
                env=self.env,
                start_new_session=True,
                close_fds=True,
                preexec_fn=self.preexec,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise DrgnError("cannot start the drgn worker with %s: %s" % (self.argv[0], exc)) from None
        line = self._readline(time.monotonic() + START_TIMEOUT)
        ready = json.loads(line) if line else {"ready": False, "error": "the worker exited at start"}
        if not ready.get("ready"):
            self.close()
            raise DrgnError("drgn could not open the dump: %s" % ready.get("error"))
        self.ready = ready
        return ready

    def call(self, code: str, timeout: float, fresh: bool = False, args: Optional[List[str]] = None) -> Dict[str, Any]:
        """Run code; a worker that does not answer in time is killed (its namespace is lost)."""
        if self.proc is None or self.proc.poll() is not None:
            raise DrgnError("the drgn worker is not running")
        self._ids += 1
        request = {"id": self._ids, "code": code, "fresh": fresh, "args": args or []}
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            self.close()
            raise DrgnError("the drgn worker died: %s" % exc) from None
        line = self._readline(time.monotonic() + timeout)
        if line is None:
            alive = self.proc is not None and self.proc.poll() is None
            self.close()
            raise DrgnError(
                "the drgn code %s; the worker was stopped and its namespace is lost (the next "
                "call starts a new one)" % ("ran over %gs" % timeout if alive else "killed the worker")
            )
        answer: Dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()

    def _readline(self, deadline: float) -> Optional[bytes]:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line
