"""Regular expressions from callers, bounded in CPU in a killable, sandboxed child.

Python's `re` backtracks and holds the GIL: one pattern like `(a+)+$` over a
long line would freeze every thread of the agent (and SIGTERM with it). So a
regex (output_search, `| grep` on crash output) runs in a forked child under
the `search` profile (no file opens, no exec, RLIMIT_CPU); the agent's thread
waits on a pipe without the GIL. A plain string needs no child: bytes.find and
a literal `re` scan are linear.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Dict, List, Optional

from . import profiles, protocol, sandbox
from .errors import AgentError
from .store import StoreError

_SYNTAX = set(".^$*+?{}[]\\|()")
Write = Callable[[bytes], None]


def is_literal(pattern: str) -> bool:
    return not _SYNTAX.intersection(pattern)


def too_costly(policy: Any, pattern: str, why: str) -> AgentError:
    return AgentError(
        protocol.PATTERN_TOO_COSTLY,
        "the pattern %r was stopped: %s (this host allows a regex %ss of "
        "CPU)" % (pattern[:200], why, policy.settings["regex_cpu_seconds"]),
        hint="search a plain string, or a regex without nested repetition like (a+)+",
        rule="regex.cpu",
    )


def run_scan(policy: Any, pattern: str, scan: Callable[[], Dict[str, Any]], fds: List[int]) -> Dict[str, Any]:
    """The store's scan (see Store.search `isolate`) in the child; its StoreErrors come back as such."""

    def child() -> Dict[str, Any]:
        try:
            return {"ok": scan()}
        except StoreError as exc:
            return {"error": [exc.code, exc.message]}

    cpu = float(policy.settings["regex_cpu_seconds"])
    try:
        answer = sandbox.fork_call(child, profiles.search(policy), timeout=cpu * 2 + 5, keep=fds)
    except sandbox.ChildFailed as exc:
        raise too_costly(policy, pattern, str(exc)) from None
    if "error" in answer:
        raise StoreError(*answer["error"])
    return answer["ok"]  # type: ignore[no-any-return]


class IsolatedChain:
    """A filter chain (dumps.pipes.Chain) run in a child: crash's output in through one pipe,
    the filtered lines out through another, written by a reader thread."""

    def __init__(self, chain: Any, policy: Any, pattern: str) -> None:
        self.chain, self.policy, self.pattern = chain, policy, pattern
        self.done = False  # the child decides when a head is full; we keep feeding until it closes

    def bind(self, write: Write) -> _ChildSink:
        return _ChildSink(self, write)


class _ChildSink:
    def __init__(self, owner: IsolatedChain, write: Write) -> None:
        self.owner = owner
        in_r, self.in_w = os.pipe()
        self.out_r, out_w = os.pipe()
        self.pid = sandbox.fork_sandboxed(profiles.search(owner.policy), keep=[in_r, out_w])
        if self.pid == 0:  # pragma: no cover - the child
            _filter_loop(owner.chain, in_r, out_w)
        os.close(in_r)
        os.close(out_w)
        self.broken = False
        self.reader = threading.Thread(target=self._read, args=(write,), daemon=True)
        self.reader.start()

    def __call__(self, data: bytes) -> None:
        if self.broken or not data:
            return
        try:
            sandbox.write_all(self.in_w, data)
        except OSError:  # the child ended: a full head, or a limit killed it (close() tells)
            self.broken = True

    def close(self) -> None:
        try:
            os.close(self.in_w)
        except OSError:
            pass
        self.reader.join()
        os.close(self.out_r)
        _, code = os.waitpid(self.pid, 0)
        if os.WIFSIGNALED(code):
            sig = os.WTERMSIG(code)
            raise too_costly(self.owner.policy, self.owner.pattern, "killed by signal %d" % sig)

    def _read(self, write: Write) -> None:
        for chunk in iter(lambda: os.read(self.out_r, 1 << 16), b""):
            write(chunk)


def _filter_loop(chain: Any, in_r: int, out_w: int) -> None:  # pragma: no cover - the child
    """Lines (each cut at the chain's line limit as it streams: chain.lines()) through the chain
    until EOF or a full head; then the chain's end."""
    code = 1
    try:
        lines = chain.lines()
        for chunk in iter(lambda: os.read(in_r, 1 << 16), b""):
            if _through(chain, lines.feed(chunk), out_w):
                break
        else:
            _through(chain, lines.end(), out_w)
        sandbox.write_all(out_w, "".join(chain.end()).encode())
        code = 0
    finally:
        os._exit(code)


def _through(chain: Any, lines: List[str], out_w: int) -> bool:  # pragma: no cover - the child
    """Feed lines to the chain, write what it passes on; True once a head is full."""
    for line in lines:
        out = chain.feed(line)
        if out:
            sandbox.write_all(out_w, "".join(out).encode())
        if chain.done:
            return True
    return False


def chain_pattern(filters: List[Any]) -> Optional[str]:
    """The first grep pattern of a chain that is a real regex (needs a child), else None."""
    for f in filters:
        rx = getattr(f, "rx", None)
        if rx is not None and not is_literal(getattr(f, "pattern", rx.pattern)):
            return str(getattr(f, "pattern", rx.pattern))
    return None
