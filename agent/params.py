"""Checking RPC parameters: every method says exactly what was wrong with its input."""

from __future__ import annotations

from typing import Any, Dict

from .errors import bad_params

_MISSING = object()


def param(params: Dict[str, Any], name: str, kind: Any, default: Any = _MISSING) -> Any:
    """params[name] if it has the right type; default when absent; else a bad_params error."""
    value = params.get(name, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise bad_params("missing parameter %r" % name)
        return default
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise bad_params("parameter %r has the wrong type (%s)" % (name, type(value).__name__))
    return value


def bounded(params: Dict[str, Any], name: str, default: Any, low: float, high: float) -> Any:
    """A number parameter within [low, high]."""
    value = param(params, name, (int, float), default)
    if not low <= value <= high:
        raise bad_params("parameter %r must be between %s and %s, got %s" % (name, low, high, value))
    return value
