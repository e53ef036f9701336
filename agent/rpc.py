"""JSON-RPC 2.0 over stdin/stdout, one object per line; requests run concurrently."""

from __future__ import annotations

import json
import sys
import threading
import traceback
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, BinaryIO, Callable, Dict, Optional, Set

from . import protocol
from .audit import RefusalLog, is_refusal
from .errors import INTERNAL_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, AgentError

Handler = Callable[[Dict[str, Any]], Any]
Live = Callable[[], bool]
# Sees each request line before it is dispatched; True: it took the stream over (agent/lease.py).
Intercept = Callable[[Dict[str, Any], bytes, BinaryIO], bool]
MAX_LINE = 1 << 20  # a request larger than this is refused, never buffered whole
_request = threading.local()  # the request a worker thread is answering


def current_request_id() -> Any:
    """The JSON-RPC id of the request this thread is handling (None outside one)."""
    return getattr(_request, "id", None)


class Channel:
    """Writes whole JSON lines to the controller; safe from any thread."""

    def __init__(self, out: BinaryIO) -> None:
        self._sink = (out, threading.Lock())  # replaced whole: a writer stuck on a dead pipe keeps the old pair
        self.closed = False

    @property
    def out(self) -> BinaryIO:
        return self._sink[0]

    def replace(self, out: BinaryIO) -> None:
        """Send from now on to `out` (a reattached controller)."""
        self._sink = (out, threading.Lock())
        self.closed = False

    def send(self, message: Dict[str, Any]) -> None:
        line = json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"
        out, lock = self._sink
        with lock:
            if self.closed or out is not self._sink[0]:
                return
            try:
                out.write(line)
                out.flush()
            except (BrokenPipeError, ValueError, OSError):
                if out is self._sink[0]:
                    self.closed = True

    def notify(self, method: str, params: Dict[str, Any]) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})


class Server:
    """Reads requests until EOF and answers each from a worker thread; refusals go to `refusals`."""

    def __init__(self, channel: Channel, workers: int = 16, refusals: Optional[RefusalLog] = None) -> None:
        self.channel = channel
        self.refusals = refusals
        self.methods: Dict[str, Handler] = {}
        self.intercept: Optional[Intercept] = None
        # method -> the handlers of the domain serving it, loaded at its first call
        self.more_methods: Optional[Callable[[str], Dict[str, Handler]]] = None
        self._loading = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc")
        self._inflight: "Set[Future[None]]" = set()  # noqa: UP037 - Future[...] is 3.9+ when evaluated

    def register(self, name: str, handler: Handler) -> None:
        self.methods[name] = handler

    def serve(self, stream: BinaryIO, live: Live = lambda: True) -> None:
        """Blocks until the controller closes the stream; answers only while `live()` (the
        stream is still the agent's current connection)."""
        while True:
            line = stream.readline(MAX_LINE + 1)
            if not line:
                break
            if len(line) > MAX_LINE and not line.endswith(b"\n"):
                self._skip_rest(stream)
                self._reply_error(
                    None, AgentError(protocol.TOO_LARGE, "request line over 1 MiB", code=INVALID_REQUEST).to_rpc()
                )
                continue
            if line.strip() and self._accept(line, stream, live):
                return

    def stop(self, grace: float = 0.0) -> None:
        """No more requests; those in flight get `grace` seconds to answer (a request sent just
        before the controller closed our stdin is still answered, as before)."""
        if grace > 0 and self._inflight:
            wait(list(self._inflight), timeout=grace)
        self._pool.shutdown(wait=False)

    @staticmethod
    def _skip_rest(stream: BinaryIO) -> None:
        while True:
            chunk = stream.readline(MAX_LINE)
            if not chunk or chunk.endswith(b"\n"):
                return

    def _accept(self, line: bytes, stream: BinaryIO, live: Live) -> bool:
        """Dispatch one request line; True when an intercept took the stream over."""
        try:
            request = json.loads(line)
        except ValueError as exc:
            self._reply_error(
                None, {"code": PARSE_ERROR, "message": "invalid JSON: %s" % exc, "data": {"kind": protocol.BAD_REQUEST}}
            )
            return False
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            self._reply_error(
                request.get("id") if isinstance(request, dict) else None,
                {
                    "code": INVALID_REQUEST,
                    "message": "not a JSON-RPC 2.0 request",
                    "data": {"kind": protocol.BAD_REQUEST},
                },
            )
            return False
        if self.intercept is not None and self.intercept(request, line, stream):
            return True
        future = self._pool.submit(self._handle, request, live)
        self._inflight.add(future)
        future.add_done_callback(self._inflight.discard)
        return False

    def _handle(self, request: Dict[str, Any], live: Live = lambda: True) -> None:
        req_id = request.get("id")
        params = request.get("params") or {}
        _request.id = req_id
        try:
            handler = self._handler(request["method"])
            if handler is None:
                raise AgentError(
                    protocol.UNKNOWN_METHOD,
                    "unknown method %r" % request["method"],
                    hint="methods: " + ", ".join(sorted(self.methods)),
                    code=METHOD_NOT_FOUND,
                )
            if not isinstance(params, dict):
                raise AgentError(protocol.BAD_PARAMS, "params must be an object", code=-32602)
            result = handler(params)
        except AgentError as exc:
            if self.refusals is not None and is_refusal(exc):
                self.refusals.record(request["method"], params, exc)
            if live():
                self._reply_error(req_id, exc.to_rpc())
        except Exception as exc:  # a bug must not kill the agent: report it with its traceback tail
            tail = traceback.format_exc()[-2000:]
            sys.stderr.write(tail)
            self._reply_error(
                req_id,
                {
                    "code": INTERNAL_ERROR,
                    "message": "%s: %s" % (type(exc).__name__, exc),
                    "data": {"kind": protocol.INTERNAL, "traceback_tail": tail},
                },
            )
        else:
            if req_id is not None and live():
                self.channel.send({"jsonrpc": "2.0", "id": req_id, "result": result})

    def _handler(self, method: str) -> Optional[Handler]:
        handler = self.methods.get(method)
        if handler is None and self.more_methods is not None:
            with self._loading:
                if method not in self.methods:
                    self.methods.update(self.more_methods(method))
            handler = self.methods.get(method)
        return handler

    def _reply_error(self, req_id: Optional[Any], error: Dict[str, Any]) -> None:
        self.channel.send({"jsonrpc": "2.0", "id": req_id, "error": error})
