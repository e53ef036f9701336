"""Structured agent errors, sent back as JSON-RPC errors."""

from __future__ import annotations

from typing import Any, Dict, Optional

from . import protocol

# JSON-RPC reserved codes, then the agent's own (stable; the controller maps them).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
APP_ERROR = 1000


class AgentError(Exception):
    """An error the caller can act on: `kind` is machine-readable, `hint` says what to do."""

    def __init__(
        self, kind: str, message: str, hint: Optional[str] = None, code: int = APP_ERROR, **extra: Any
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint
        self.code = code
        self.extra = extra

    def to_rpc(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {"kind": self.kind}
        if self.hint:
            data["hint"] = self.hint
        data.update(self.extra)
        return {"code": self.code, "message": self.message, "data": data}


def bad_params(message: str, hint: Optional[str] = None) -> AgentError:
    return AgentError(protocol.BAD_PARAMS, message, hint, code=INVALID_PARAMS)
