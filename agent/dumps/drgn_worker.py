"""The drgn worker: one process tree per session, a persistent namespace like drgn's REPL.

Run as `PYTHON -I -c SOURCE VMCORE VMLINUX CODE_IN CODE_OUT` by the agent (any Python that can
import drgn; stdlib otherwise). It opens the dump and drops root for nobody, then forks the
process that runs callers' code: that one keeps the persistent namespace and the code channel
(fds CODE_IN, CODE_OUT) and nothing else. This process keeps stdin/stdout, the agent's
channel for its own queries and the bundled scripts, each in a fresh copy of the namespace no
caller's code ever ran in: what callers' code rebinds, monkeypatches or writes stays in its
own process (another address space, another channel, and where Landlock scopes signals
(ABI >= 6), no way to signal this one).

Requests are JSON lines; answers stream as lines: {"id", "part": "out" | "value" | "err",
"text"} in chunks, then {"id", "done": true, "ok", "value_head"}. The agent bounds what it
reads (line and volume caps), so nothing here needs to be trusted for that.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import io
import json
import os
import pwd
import signal
import struct
import sys
import traceback
from typing import Any, Callable, Dict, List

CHUNK = 16384  # characters of output per answer line (the agent caps lines at 1 MiB)
ERR_CAP = 1 << 20  # characters of stderr kept per call (a traceback, warnings)
VALUE_HEAD = 4000
_SELF = globals().get("__file__", "<string>")  # run with -c: its frames are "<string>"
Send = Callable[[Dict[str, Any]], None]


class _Stream(io.TextIOBase):
    """A call's stdout: sent to the agent in chunks as it is written."""

    def __init__(self, send: Send) -> None:
        super().__init__()
        self.send = send
        self.parts: List[str] = []
        self.size = 0
        self.last = "\n"  # what the output ended with so far: it ends with a newline in the output

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not text:
            return 0
        self.last = text[-1]
        self.parts.append(text)
        self.size += len(text)
        if self.size >= CHUNK:
            self.flush()
        return len(text)

    def flush(self) -> None:
        text, self.parts, self.size = "".join(self.parts), [], 0
        for i in range(0, len(text), CHUNK):
            self.send({"part": "out", "text": text[i : i + CHUNK]})


class _Kept(io.StringIO):
    """A call's stderr: kept up to ERR_CAP characters, sent after the value."""

    def write(self, text: str) -> int:
        room = ERR_CAP - self.tell()
        return super().write(text[: max(0, room)]) if room > 0 else len(text)


def load(vmcore: str, vmlinux: str) -> Dict[str, Any]:
    import drgn

    prog = drgn.Program()
    prog.set_core_dump(vmcore)
    prog.load_debug_info([vmlinux])
    # A pointer in init_task needs the page tables: old drgn fails here on many dumps, and every
    # later helper would fail the same way ("recursive address translation").
    prog["init_task"].tasks.next.read_()
    namespace: Dict[str, Any] = {"prog": prog, "drgn": drgn, "__name__": "__drgn_session__"}
    exec("from drgn import *\nfrom drgn.helpers.common import *\nfrom drgn.helpers.linux import *", namespace)
    return namespace


def drop_privileges() -> str:
    """Become nobody once the files are open: user code reads the dump through prog only."""
    if os.geteuid() != 0:
        return "not root: ran as uid %d" % os.geteuid()
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return "kept root: no user nobody"
    os.setgroups([])
    os.setresgid(nobody.pw_gid, nobody.pw_gid, nobody.pw_gid)
    os.setresuid(nobody.pw_uid, nobody.pw_uid, nobody.pw_uid)
    return "dropped root for nobody (uid %d)" % nobody.pw_uid


def run(code: str, namespace: Dict[str, Any], send: Send) -> None:
    """exec the code; the value of a trailing expression is returned like a REPL shows it."""
    out, err = _Stream(send), _Kept()
    value = None
    ok = True
    try:
        tree = ast.parse(code, "<drgn_run>", "exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        assert last is None or isinstance(last, ast.Expr)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            exec(compile(tree, "<drgn_run>", "exec"), namespace)
            if last is not None:
                result = eval(compile(ast.Expression(last.value), "<drgn_run>", "eval"), namespace)
                if result is not None:
                    namespace["_"] = result
                    value = _show(result)
    except BaseException:  # SystemExit too: the session lives on
        ok = False
        err.write(_traceback())
    if out.last != "\n":
        out.write("\n")
    out.flush()
    for part, text in (("value", value or ""), ("err", err.getvalue())):
        text += "\n" if text and not text.endswith("\n") else ""
        for i in range(0, len(text), CHUNK):
            send({"part": part, "text": text[i : i + CHUNK]})
    send({"done": True, "ok": ok, "value_head": value[:VALUE_HEAD] if value else None})


def _show(value: Any) -> str:
    """drgn objects print as C (like drgn's REPL); the rest as repr."""
    return str(value) if type(value).__module__.startswith(("drgn", "_drgn")) else repr(value)


def _traceback() -> str:
    kind, exc, tb = sys.exc_info()
    frames = traceback.extract_tb(tb)
    own = [f for f in frames if f.filename != _SELF]  # the worker's frames are noise
    return (
        "Traceback (most recent call last):\n"
        + "".join(traceback.format_list(own))
        + "".join(traceback.format_exception_only(kind, exc))
    )


def serve(requests: Any, answers: Any, namespace: Dict[str, Any], persistent: bool) -> None:
    """Answer requests until the agent closes the channel. `persistent`: callers' code, which keeps
    its namespace between calls; else each call (the agent's own) gets a fresh copy."""
    for line in requests:
        request = json.loads(line)
        ns = namespace
        if request.get("fresh") or not persistent:  # analysis scripts run in their own namespace
            ns = dict(namespace, args=list(request.get("args") or []))
        run(request["code"], ns, _sender(answers, request.get("id")))


def _sender(answers: Any, ident: Any) -> Send:
    def send(message: Dict[str, Any]) -> None:
        message["id"] = ident
        answers.write(json.dumps(message) + "\n")
        answers.flush()

    return send


def _scope_signals() -> bool:
    """A Landlock domain of its own that scopes signals and abstract sockets (ABI >= 6): this
    process can then signal nothing outside it, the trusted worker included."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 6:
        return False
    attr = struct.pack("<QQQ", 0, 0, 3)  # handled fs, net: none; scoped: abstract sockets, signals
    ruleset = libc.syscall(444, attr, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0))
    if ruleset < 0:
        return False
    libc.prctl(38, 1, 0, 0, 0)  # no_new_privs (set already by the sandbox; needed without it)
    done = libc.syscall(446, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    os.close(ruleset)
    return bool(done == 0)


def code_process(namespace: Dict[str, Any], code_in: int, code_out: int, trusted_out: int) -> None:
    """The forked process for callers' code: the trusted channel closed, first in line for the
    OOM killer (the agent sets that where Landlock keeps /proc from us), its own Landlock domain
    where it can have one."""
    os.close(trusted_out)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    libc = ctypes.CDLL(None)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: ends with the trusted worker
    try:
        with open("/proc/self/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass
    privileges = drop_privileges()
    scoped = _scope_signals()
    answers = os.fdopen(code_out, "w")
    answers.write(json.dumps({"ready": True, "scoped": scoped, "privileges": privileges}) + "\n")
    answers.flush()
    serve(io.TextIOWrapper(io.FileIO(code_in, "r")), answers, namespace, persistent=True)
    os._exit(0)


def main() -> int:
    vmcore, vmlinux = sys.argv[1], sys.argv[2]
    code_in, code_out = int(sys.argv[3]), int(sys.argv[4])
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # C-level prints must not corrupt the JSON channel
    try:
        namespace = load(vmcore, vmlinux)
    except BaseException as exc:  # report whatever stops the load
        channel.write(json.dumps({"ready": False, "error": "%s: %s" % (type(exc).__name__, exc)}) + "\n")
        channel.flush()
        return 1
    if os.fork() == 0:
        try:
            code_process(namespace, code_in, code_out, channel.fileno())
        finally:
            os._exit(1)
    privileges = drop_privileges()
    os.close(code_in)
    os.close(code_out)
    prog = namespace["prog"]
    ready = {"ready": True, "privileges": privileges, "uid": os.geteuid()}
    ready["release"] = prog["UTS_RELEASE"].string_().decode()
    channel.write(json.dumps(ready) + "\n")
    channel.flush()
    serve(sys.stdin, channel, namespace, persistent=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
