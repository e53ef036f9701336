"""The wire between the controller's front and its worker processes (controller/shards.py).

One frame per line on the worker's stdin and stdout:

    >HOST\\0LINE    a JSON-RPC line for HOST's agent (front -> worker), forwarded as it is
    <HOST\\0LINE    a line HOST's agent wrote (worker -> front), forwarded as it is
    {...}          a control message (JSON): open a link, its stages, its end, close it

Agent lines are never parsed by the worker and never re-encoded: a warm call costs the worker
its SSH packets only, and the front what an in-process link costs minus the SSH. Neither a JSON
line nor a host name holds a newline or a NUL byte (JSON escapes them; names are checked).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from crashfleet.inventory import Host

from . import errors

TO_AGENT, FROM_AGENT, CONTROL = ord(">"), ord("<"), ord("{")


def data_frame(kind: bytes, host: bytes, line: bytes) -> bytes:
    """A frame for one agent line (`line` ends with its newline)."""
    return kind + host + b"\0" + line


def control_frame(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


def valid_name(name: str) -> bool:
    return "\0" not in name and "\n" not in name


def host_to_wire(host: Host) -> dict[str, Any]:
    return {"name": host.name, "vars": dict(host.vars), "groups": list(host.groups)}


def host_from_wire(data: Mapping[str, Any]) -> Host:
    return Host(str(data["name"]), dict(data["vars"]), tuple(data["groups"]))


def error_to_wire(exc: BaseException) -> dict[str, Any]:
    """An exception raised in a worker, as the front raises it again (its class and fields)."""
    if isinstance(exc, errors.AgentCallError):
        return {"class": "agent", "message": exc.message, "hint": exc.hint, "kind": exc.kind, "data": exc.data}
    if isinstance(exc, errors.HostError):
        fields = {
            "message": exc.message,
            "hint": exc.hint,
            "kind": exc.kind,
            "stderr_tail": exc.stderr_tail,
            "exit_status": exc.exit_status,
            "rule": exc.rule,
        }
        if isinstance(exc, errors.LinkClosed):
            fields["started_job"] = exc.started_job
        return {"class": _nearest(exc, _HOST_ERRORS), **fields}
    if isinstance(exc, errors.CrashfleetError):
        return {"class": _nearest(exc, _OTHER_ERRORS), "message": exc.message, "hint": exc.hint}
    return {"class": "other", "type": type(exc).__name__, "message": str(exc)}


_HOST_ERRORS: dict[str, type[errors.HostError]] = {
    cls.__name__: cls for cls in (errors.HostError, errors.Unreachable, errors.ConnectLost, errors.LinkClosed)
}
_OTHER_ERRORS: dict[str, type[errors.CrashfleetError]] = {
    cls.__name__: cls for cls in (errors.CrashfleetError, errors.UsageError)
}


def _nearest(exc: BaseException, known: Mapping[str, type[BaseException]]) -> str:
    """The name of the nearest class of `exc` the front knows."""
    return next(cls.__name__ for cls in type(exc).__mro__ if known.get(cls.__name__) is cls)


def error_from_wire(data: Mapping[str, Any]) -> BaseException:
    fields = dict(data)
    cls = fields.pop("class")
    if cls == "agent":
        return errors.agent_error(fields["message"], fields["hint"], fields["kind"], fields["data"])
    if cls in _HOST_ERRORS:
        return _HOST_ERRORS[cls](fields.pop("message"), fields.pop("hint"), **fields)
    if cls in _OTHER_ERRORS:
        return _OTHER_ERRORS[cls](fields["message"], fields["hint"])
    return remote_exception(str(fields["type"]), str(fields["message"]))


def remote_exception(type_name: str, message: str) -> Exception:
    """An exception of another process, under its own class name (messages quote it)."""
    named: type[Exception] = type(type_name, (Exception,), {})
    return named(message)
