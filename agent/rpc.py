"""JSON-RPC 2.0 over stdin/stdout, one object per line; requests run concurrently."""

from __future__ import annotations

import json
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, Callable, Dict, Optional

from .audit import RefusalLog, is_refusal
from .errors import (INTERNAL_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR,
                     AgentError)

Handler = Callable[[Dict[str, Any]], Any]
MAX_LINE = 1 << 20  # a request larger than this is refused, never buffered whole


class Channel:
    """Writes whole JSON lines to the controller; safe from any thread."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lock = threading.Lock()
        self.closed = False

    def send(self, message: Dict[str, Any]) -> None:
        line = json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"
        with self._lock:
            if self.closed:
                return
            try:
                self._out.write(line)
                self._out.flush()
            except (BrokenPipeError, ValueError, OSError):
                self.closed = True

    def notify(self, method: str, params: Dict[str, Any]) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})


class Server:
    """Reads requests until EOF and answers each from a worker thread; refusals go to `refusals`."""

    def __init__(self, channel: Channel, workers: int = 16, refusals: Optional[RefusalLog] = None) -> None:
        self.channel = channel
        self.refusals = refusals
        self.methods: Dict[str, Handler] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc")

    def register(self, name: str, handler: Handler) -> None:
        self.methods[name] = handler

    def serve(self, stream: BinaryIO) -> None:
        """Blocks until the controller closes our stdin."""
        while True:
            line = stream.readline(MAX_LINE + 1)
            if not line:
                break
            if len(line) > MAX_LINE and not line.endswith(b"\n"):
                self._skip_rest(stream)
                self._reply_error(None, AgentError("too_large", "request line over 1 MiB",
                                                   code=INVALID_REQUEST).to_rpc())
                continue
            if line.strip():
                self._accept(line)
        self._pool.shutdown(wait=False)

    @staticmethod
    def _skip_rest(stream: BinaryIO) -> None:
        while True:
            chunk = stream.readline(MAX_LINE)
            if not chunk or chunk.endswith(b"\n"):
                return

    def _accept(self, line: bytes) -> None:
        try:
            request = json.loads(line)
        except ValueError as exc:
            self._reply_error(None, {"code": PARSE_ERROR, "message": "invalid JSON: %s" % exc})
            return
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            self._reply_error(request.get("id") if isinstance(request, dict) else None,
                              {"code": INVALID_REQUEST, "message": "not a JSON-RPC 2.0 request"})
            return
        self._pool.submit(self._handle, request)

    def _handle(self, request: Dict[str, Any]) -> None:
        req_id = request.get("id")
        handler = self.methods.get(request["method"])
        params = request.get("params") or {}
        try:
            if handler is None:
                raise AgentError("unknown_method", "unknown method %r" % request["method"],
                                 hint="methods: " + ", ".join(sorted(self.methods)),
                                 code=METHOD_NOT_FOUND)
            if not isinstance(params, dict):
                raise AgentError("bad_params", "params must be an object", code=-32602)
            result = handler(params)
        except AgentError as exc:
            if self.refusals is not None and is_refusal(exc):
                self.refusals.record(request["method"], params, exc)
            self._reply_error(req_id, exc.to_rpc())
        except Exception as exc:  # a bug must not kill the agent: report it with its traceback tail
            tail = traceback.format_exc()[-2000:]
            sys.stderr.write(tail)
            self._reply_error(req_id, {"code": INTERNAL_ERROR, "message": "%s: %s" % (type(exc).__name__, exc),
                                       "data": {"kind": "internal", "traceback_tail": tail}})
        else:
            if req_id is not None:
                self.channel.send({"jsonrpc": "2.0", "id": req_id, "result": result})

    def _reply_error(self, req_id: Optional[Any], error: Dict[str, Any]) -> None:
        self.channel.send({"jsonrpc": "2.0", "id": req_id, "error": error})
