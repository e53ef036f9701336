"""The drgn worker: one process per session, a persistent namespace like drgn's REPL.

Run as `PYTHON -I -c SOURCE VMCORE VMLINUX` by the agent (any Python that can
import drgn; stdlib otherwise). It opens the dump, then drops root for nobody
before it runs anyone's code. Requests and answers are JSON lines on
stdin/stdout; user code's own stdout/stderr are captured per call.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import pwd
import sys
import traceback
from typing import IO, Any, Dict

MAX_CAPTURE = 32 << 20  # characters of stdout a single call may produce
_SELF = globals().get("__file__", "<string>")  # run with -c: its frames are "<string>"


class _Capped(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.cut = False

    def write(self, text: str) -> int:
        if self.tell() + len(text) > MAX_CAPTURE:
            self.cut = True
            text = text[: max(0, MAX_CAPTURE - self.tell())]
        return super().write(text)


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


def run(code: str, namespace: Dict[str, Any]) -> Dict[str, Any]:
    """exec the code; the value of a trailing expression is returned like a REPL shows it."""
    out, err = _Capped(), _Capped()
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
    return {"ok": ok, "stdout": out.getvalue(), "stderr": err.getvalue(), "value": value, "cut": out.cut or err.cut}


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


def serve(channel: IO[str], namespace: Dict[str, Any]) -> None:
    for line in sys.stdin:
        request = json.loads(line)
        ns = namespace
        if request.get("fresh"):  # analysis scripts run in their own namespace
            ns = dict(namespace, args=list(request.get("args") or []))
        answer = run(request["code"], ns)
        answer["id"] = request.get("id")
        channel.write(json.dumps(answer) + "\n")
        channel.flush()


def main() -> int:
    vmcore, vmlinux = sys.argv[1], sys.argv[2]
    channel = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # C-level prints must not corrupt the JSON channel
    try:
        namespace = load(vmcore, vmlinux)
    except BaseException as exc:  # report whatever stops the load
        channel.write(json.dumps({"ready": False, "error": "%s: %s" % (type(exc).__name__, exc)}) + "\n")
        channel.flush()
        return 1
    privileges = drop_privileges()
    prog = namespace["prog"]
    channel.write(
        json.dumps(
            {
                "ready": True,
                "privileges": privileges,
                "uid": os.geteuid(),
                "release": prog["UTS_RELEASE"].string_().decode(),
            }
        )
        + "\n"
    )
    channel.flush()
    serve(channel, namespace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
