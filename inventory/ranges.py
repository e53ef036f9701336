"""Expand host definitions such as ``web[01:50]:2222`` into host names.

Follows Ansible's ``expand_hostname_range``: zero-padded starts keep their
width, ``[a:f]`` walks ASCII letters, an optional third field is the step,
and several ranges in one name multiply out left to right.
"""

from __future__ import annotations

import string
from collections.abc import Callable

from .address import parse_address
from .errors import InventoryError


def expand_host_definition(text: str) -> tuple[list[str], int | None]:
    """Return the host names a definition stands for, plus its ``:port`` if any."""
    try:
        pattern, port = parse_address(text)
    except ValueError:
        pattern, port = text, None
    if text.strip().endswith(":") and port is None:
        raise InventoryError(f"invalid host pattern {text!r}: a trailing ':' must be followed by a port")
    names = expand_range(pattern) if "[" in pattern else [pattern]
    if any(name.strip() == "---" for name in names):
        raise InventoryError(f"invalid host pattern {text!r}: '---' suggests a YAML file")
    return names, port


def expand_range(name: str) -> list[str]:
    """Expand the first ``[begin:end(:step)]`` in ``name``, recursing for the rest."""
    head, sep, rest = name.partition("[")
    body, sep2, tail = rest.partition("]")
    if not sep or not sep2:
        raise InventoryError(f"host range in {name!r} is not closed with ']'")
    names: list[str] = []
    for item in _sequence(body, name):
        expanded = f"{head}{item}{tail}"
        names.extend(expand_range(expanded) if "[" in expanded else [expanded])
    return names


def _sequence(body: str, name: str) -> list[str]:
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise InventoryError(f"host range in {name!r} must be begin:end or begin:end:step")
    begin, end = bounds[0] or "0", bounds[1]
    if not end:
        raise InventoryError(f"host range in {name!r} must specify an end value")
    try:
        step = int(bounds[2]) if len(bounds) == 3 else 1
        if begin in string.ascii_letters and end in string.ascii_letters:
            return _letters(begin, end, step, name)
        fill = _filler(begin, end, name)
        return [fill(i) for i in range(int(begin), int(end) + 1, step)]
    except ValueError as exc:
        raise InventoryError(f"host range in {name!r} is not valid: {exc}") from None


def _letters(begin: str, end: str, step: int, name: str) -> list[str]:
    first, last = string.ascii_letters.index(begin), string.ascii_letters.index(end)
    if first > last:
        raise InventoryError(f"host range in {name!r} must have begin <= end")
    return list(string.ascii_letters[first : last + 1 : step])


def _filler(begin: str, end: str, name: str) -> Callable[[int], str]:
    """Zero-padded starts ('01') keep their width, as Ansible does."""
    if begin.startswith("0") and len(begin) > 1:
        if len(begin) != len(end):
            raise InventoryError(f"host range in {name!r} must use equal-length begin and end")
        width = len(begin)
        return lambda i: str(i).zfill(width)
    return str
