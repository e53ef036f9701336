"""One crash process on one (vmlinux, vmcore), driven through a pty with pexpect.

Started silent, without ~/.crashrc, without a pager, in an empty dir, in its
own session (pexpect's child is a session leader): close() kills the group.
A command streams into an output writer until the prompt comes back; one that
outlives its timeout is interrupted (^C), and the process is restarted when
that does not bring the prompt back.
"""

from __future__ import annotations

import os
import signal
import termios
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pexpect  # type: ignore[import-untyped]

from .pipes import Chain

PROMPT = b"crash> "
START_TIMEOUT = 300.0  # crash reads the whole vmlinux's DWARF: minutes on a big one under load
INTERRUPT_GRACE = 5.0
# a command being stopped frees the session after ^C, a resync and perhaps a restart of crash
STOPPING_WAIT = 2 * INTERRUPT_GRACE + START_TIMEOUT
MODULE_TIMEOUT = 120.0  # gdb reads one module's DWARF
READ_CHUNK = 1 << 16
HELD_MAX = 1 << 16  # bytes of a line without its newline held back (it might be the prompt): past it, passed on
Setup = Callable[[Callable[[], None]], Optional[Callable[[], None]]]


class CrashError(Exception):
    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


class CrashSession:
    def __init__(
        self,
        binary: str,
        vmlinux: str,
        vmcore: str,
        workdir: str,
        env: Dict[str, str],
        setup: Setup = lambda extra: extra,
        modules: Sequence[Tuple[str, str]] = (),
    ) -> None:
        """`setup` wraps our own pty setting into the sandbox's preexec (sandbox.child_setup);
        `modules`: (name, debuginfo file) loaded with `mod -s` at every start."""
        self.binary, self.vmlinux, self.vmcore = binary, vmlinux, vmcore
        self.modules = list(modules)
        self.module_errors: Dict[str, str] = {}  # name -> what `mod -s` said, at the last start
        self.workdir, self.env, self.setup = workdir, env, setup
        self.child: Optional[pexpect.spawn] = None
        self.minimal = False
        self.lock = threading.Lock()  # one command at a time
        self._interrupt = threading.Event()
        # set while a command is being stopped (^C, resync, maybe a restart): the session is
        # about to be free, so the next command waits for it rather than calling it busy
        self.stopping = threading.Event()
        self._pushback = b""
        self.restarts = 0
        self._syncs = 0
        self._capped: Optional[str] = None  # the cap the running command went over

    @property
    def pid(self) -> Optional[int]:
        return self.child.pid if self.child is not None else None

    def start(self, timeout: float = START_TIMEOUT) -> Dict[str, Any]:
        """Start crash; on a failed full start retry with --minimal and say so."""
        try:
            banner = self._spawn([], timeout)
            return {"minimal": False, "banner": banner}
        except CrashError as first:
            self.close()
            try:
                banner = self._spawn(["--minimal"], timeout)
            except CrashError:
                raise first from None
            self.minimal = True
            return {
                "minimal": True,
                "banner": banner,
                "note": "full initialisation failed, opened with --minimal (few commands work: log, "
                "rd, sym, dis...): " + first.output.strip()[-600:],
            }

    def _spawn(self, extra: List[str], timeout: float) -> str:
        argv = ["-s", "--no_crashrc", "--no_scroll"] + extra + [self.vmlinux, self.vmcore]
        self.child = pexpect.spawn(
            self.binary,
            argv,
            cwd=self.workdir,
            env=self.env,
            echo=False,
            timeout=timeout,
            dimensions=(10000, 250),
            preexec_fn=self.setup(_raw_output),
        )
        self.child.delaybeforesend = None  # pexpect sleeps 50 ms before every send by default
        out: List[bytes] = []
        if not self._until_prompt(out.append, time.monotonic() + timeout, interruptible=False):
            text = b"".join(out).decode("utf-8", "replace")
            status = "exited" if not self.child.isalive() else "did not reach its prompt in %ds" % timeout
            self.close()
            raise CrashError("crash %s on %s: %s" % (status, self.vmcore, text.strip()[-800:]), text)
        for setting in ("set scroll off", "set radix 16"):
            self.run_raw(setting, timeout=30)
        self._load_modules()
        return b"".join(out).decode("utf-8", "replace")

    def _load_modules(self) -> None:
        """`mod -s NAME FILE` for each module, by the agent (users' `mod -s` is refused by
        crash_grammar); names and paths were checked (modules.NAME, the cache's hex dirs)."""
        self.module_errors = {}
        for name, path in self.modules:
            text = self.run_raw("mod -s %s %s" % (name, path), timeout=MODULE_TIMEOUT)
            if path not in text or "mod: " in text:  # a loaded one is listed with its object file
                self.module_errors[name] = text.strip()[-300:] or "no answer"

    def run_raw(self, command: str, timeout: float) -> str:
        out: List[bytes] = []
        self._send(command)
        self._until_prompt(out.append, time.monotonic() + timeout, interruptible=False)
        return b"".join(out).decode("utf-8", "replace")

    def run(
        self,
        command: str,
        chain: Optional[Chain],
        write: Callable[[bytes], None],
        timeout: float,
        max_output: Optional[int] = None,
    ) -> Dict[str, Any]:
        """Run one command, its output (through the chain) into write(); says how it ended.
        An interrupt() that came before this call (a cancel racing the job's start) counts.
        Past `max_output` bytes written the command is interrupted like a timeout, and the answer
        names the cap; what its pipes filter out is read (linearly, nothing held) until its timeout,
        so `| grep -c` can count over a long output."""
        self._capped = None
        try:
            ended = self._run(command, chain, write, timeout, max_output)
        finally:
            self._interrupt.clear()
            self.stopping.clear()
        if self._capped:
            ended["cap"] = "output"
        return ended

    def _run(
        self,
        command: str,
        chain: Optional[Chain],
        write: Callable[[bytes], None],
        timeout: float,
        max_output: Optional[int],
    ) -> Dict[str, Any]:
        if self._interrupt.is_set():  # cancelled before it began: a ^C now would hit crash's line editor
            return {
                "ended": "interrupted",
                "reason": "cancelled",
                "note": "cancelled before it started; the session is still open",
            }
        gone = self.child is not None and not self.child.isalive()
        exited = self.child.exitstatus if gone and self.child is not None else None
        if self.child is None or gone:
            self.restart()
        wrote = [0]

        def counted(data: bytes) -> None:
            wrote[0] += len(data)
            write(data)
            if max_output is not None and wrote[0] > max_output and not self._capped:
                self._capped = "output cap of %d bytes reached (policy max_output_bytes)" % max_output

        # Pipes: in the agent (_LineSink), or in a sandboxed child (regexbox.IsolatedChain.bind).
        sink: Any = (
            counted if chain is None else chain.bind(counted) if hasattr(chain, "bind") else _LineSink(chain, counted)
        )
        try:
            ended = self._command(command, sink, wrote, timeout, again=True)
        finally:
            if sink is not counted:
                sink.close()
        if gone:  # e.g. crash 8.0.2 exiting after an interrupted (cancelled) command: say so here
            said = (
                "crash had exited since the last command (status %s) and was restarted; earlier `set` "
                "context is lost" % exited
            )
            ended["note"] = "%s; %s" % (said, ended["note"]) if ended.get("note") else said
        return ended

    def _command(
        self, command: str, sink: Callable[[bytes], None], wrote: List[int], timeout: float, again: bool
    ) -> Dict[str, Any]:
        self._send(command)
        started = time.monotonic()
        if self._until_prompt(sink, started + timeout):
            return {"ended": "done", "seconds": round(time.monotonic() - started, 3)}
        if (
            again
            and not wrote[0]
            and not self._interrupt.is_set()
            and self.child is not None
            and not self.child.isalive()
        ):
            # crash 8.0.2 sometimes exits (status 1) on its first command after an interrupted
            # one; commands here only read, so a fresh crash runs it once more.
            status = self.child.exitstatus
            self.restart()
            ended = self._command(command, sink, wrote, timeout, again=False)
            ended["note"] = (
                "crash exited (status %s) on this command and was restarted; the command ran "
                "again; earlier `set` context is lost" % status
            )
            return ended
        why = self._capped or ("cancelled" if self._interrupt.is_set() else "timeout after %gs" % timeout)
        capped, self._capped = self._capped, None  # what crash still prints after ^C is read, not held against it
        self.stopping.set()
        self._interrupt.clear()
        assert self.child is not None
        self.child.sendintr()
        stopped = self._until_prompt(sink, time.monotonic() + INTERRUPT_GRACE) and self._resync()
        self._capped = capped
        if stopped:
            return {
                "ended": "interrupted",
                "reason": why,
                "note": "the command was interrupted (%s); the session is still open" % why,
            }
        self.restart()
        return {
            "ended": "restarted",
            "reason": why,
            "note": "the command did not stop on ^C (%s): crash was restarted; earlier `set` context is lost" % why,
        }

    def _resync(self) -> bool:
        """After ^C, crash may still print (a second prompt, the tail of the output): have crash
        name a token and read up to it, so the next command's output is only its own (`sym`, a
        builtin: crash's `echo` is /bin/sh's, which the sandbox does not let it start).  crash 8.0.2
        sometimes exits on its next gdb call after a ^C: a cheap one (`p jiffies`) goes first,
        so that happens here, where the interrupted command's answer can say it restarted."""
        deadline = time.monotonic() + INTERRUPT_GRACE
        self._send("p jiffies")
        if not self._until_prompt(lambda _chunk: None, deadline, interruptible=False):
            return False
        self._syncs += 1
        token = "crashfleet_sync_%d" % self._syncs
        self._send("sym " + token)
        seen: List[bytes] = []
        while time.monotonic() < deadline:
            if not self._until_prompt(seen.append, deadline, interruptible=False):
                return False
            if any(line.strip() == b"symbol not found: " + token.encode() for line in b"".join(seen).splitlines()):
                return True
        return False

    def take(self, busy_wait: float) -> bool:
        """The command lock: a command being stopped (cancelled, timed out) is waited for, as it
        ends soon; one still working only `busy_wait` s (the caller hears the session is busy)."""
        if self.lock.acquire(timeout=busy_wait):
            return True
        return self.stopping.is_set() and self.lock.acquire(timeout=STOPPING_WAIT)

    def interrupt(self) -> None:
        """Ask the running command to stop (from another thread)."""
        self.stopping.set()
        self._interrupt.set()

    def restart(self) -> None:
        self.close()
        self.restarts += 1
        self._spawn(["--minimal"] if self.minimal else [], START_TIMEOUT)

    def close(self) -> None:
        child, self.child = self.child, None
        if child is None:
            return
        try:
            os.killpg(child.pid, signal.SIGKILL)  # crash and anything it started
        except (ProcessLookupError, PermissionError):
            pass
        try:
            child.close(force=True)
        except Exception:  # already gone
            pass

    def _send(self, command: str) -> None:
        assert self.child is not None
        self._drain()
        self.child.sendline(command)

    def _drain(self) -> None:
        """Throw away anything left from an interrupted command."""
        assert self.child is not None
        self._pushback = b""
        while True:
            try:
                if not self.child.read_nonblocking(READ_CHUNK, timeout=0):
                    return
            except (pexpect.TIMEOUT, pexpect.EOF):
                return

    def _until_prompt(self, sink: Callable[[bytes], None], deadline: float, interruptible: bool = True) -> bool:
        """Pass output to sink until crash prints its prompt; False on timeout, EOF, interrupt or a
        cap. The last partial line is held back (it may be the prompt), at most HELD_MAX bytes: a
        longer one is passed on as it comes, so nothing is held or scanned twice."""
        assert self.child is not None
        held, line_start = b"", True
        while True:
            stop = interruptible and (self._interrupt.is_set() or self._capped)
            if stop or time.monotonic() >= deadline:
                sink(held) if held and held != PROMPT else None
                return False
            try:
                chunk = self._read(min(0.5, max(0.0, deadline - time.monotonic())))
            except pexpect.EOF:
                sink(held) if held else None
                return False
            if not chunk:
                if line_start and (held == PROMPT or held.endswith(b"\n" + PROMPT)):
                    sink(held[: -len(PROMPT)])
                    return True
                continue
            data = (held + chunk).replace(b"\r\n", b"\n")
            if data.endswith(b"\r"):
                data, held = data[:-1], b"\r"
            else:
                held = b""
            cut = data.rfind(b"\n") + 1
            line_start = line_start or cut > 0
            sink(data[:cut])
            held = data[cut:] + held
            if len(held) > HELD_MAX:  # not the prompt: pass it on, and what follows is mid-line
                sink(held)
                held, line_start = b"", False
            if line_start and held == PROMPT and not self._more_soon():
                return True

    def _more_soon(self) -> bool:
        """True when output follows what looked like the prompt (a line that starts with it)."""
        try:
            self._pushback = self._read(0.02)
        except pexpect.EOF:
            return False
        return bool(self._pushback)

    def _read(self, timeout: float) -> bytes:
        """Output so far (b"" when none came within timeout); raises pexpect.EOF at the end."""
        assert self.child is not None
        if self._pushback:
            chunk, self._pushback = self._pushback, b""
            return chunk
        try:
            return self.child.read_nonblocking(READ_CHUNK, timeout=timeout)  # type: ignore[no-any-return]
        except pexpect.TIMEOUT:
            return b""


class _LineSink:
    """Bytes in, whole lines (each bounded, pipes.Lines) through the filter chain, bytes out."""

    def __init__(self, chain: Chain, write: Callable[[bytes], None]) -> None:
        self.chain, self.write, self.lines = chain, write, chain.lines()

    def __call__(self, data: bytes) -> None:
        if not self.chain.done:
            self._through(self.lines.feed(data))

    def _through(self, lines: List[str]) -> None:
        out: List[str] = []
        for line in lines:
            out.extend(self.chain.feed(line))
            if self.chain.done:
                break
        if out:
            self.write("".join(out).encode())

    def close(self) -> None:
        if not self.chain.done:
            self._through(self.lines.end())
        tail = self.chain.end()
        if tail:
            self.write("".join(tail).encode())


def _raw_output() -> None:
    """In the child, before exec: no \\n -> \\r\\n translation on the pty."""
    attrs = termios.tcgetattr(0)
    attrs[1] &= ~termios.ONLCR
    termios.tcsetattr(0, termios.TCSANOW, attrs)
