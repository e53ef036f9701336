"""Ansible's coercions for connection variables that arrive as loose strings."""

from __future__ import annotations

from typing import Any

_TRUE = frozenset({"y", "yes", "on", "1", "true", "t"})
_FALSE = frozenset({"n", "no", "off", "0", "false", "f"})


def ansible_bool(value: Any) -> bool:
    """Parse a boolean the way ``ansible.module_utils.parsing.convert_bool`` does.

    Raises ValueError for anything Ansible itself would reject.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, (str, bytes)):
        text = value.decode() if isinstance(value, bytes) else value
        normal = text.strip().lower()
        if normal in _TRUE:
            return True
        if normal in _FALSE:
            return False
    raise ValueError(f"{value!r} is not a valid boolean")


def port_number(value: Any) -> int:
    """Convert an ``ansible_port`` value to a TCP port, or raise ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a port number")
    try:
        port = int(value.strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} is not a port number") from None
    if not 0 < port < 65536:
        raise ValueError(f"{value!r} is outside 1-65535")
    return port
