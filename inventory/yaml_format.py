"""Ansible's YAML inventory format: groups with ``hosts``, ``children`` and ``vars``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .builder import InventoryBuilder
from .errors import InventoryError
from .ranges import expand_host_definition

log = logging.getLogger(__name__)
_SECTIONS = ("vars", "children", "hosts")


def parse_yaml_inventory(data: Any, path: Path, builder: InventoryBuilder) -> None:
    """Add every top-level group of an already-loaded YAML document."""
    if not isinstance(data, Mapping) or not data:
        raise InventoryError("a YAML inventory must be a mapping of group names", path)
    try:
        for name, body in data.items():
            _parse_group(str(name), body, builder)
    except InventoryError as exc:
        raise exc.located(path) from None


def _parse_group(name: str, body: Any, builder: InventoryBuilder) -> str:
    if body is not None and not isinstance(body, Mapping):
        log.warning("skipping %r: a group must be a mapping, not %s", name, type(body).__name__)
        return name
    builder.add_group(name)
    for key, value in _sections(name, body or {}):
        if key == "vars":
            for var, var_value in value.items():
                builder.set_group_var(name, str(var), var_value)
        elif key == "children":
            for child, child_body in value.items():
                builder.add_child(name, _parse_group(str(child), child_body, builder))
        else:
            for definition, host_vars in value.items():
                _add_hosts(name, definition, host_vars, builder)
    return name


def _sections(group: str, body: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """The group's sections in file order; a bare string counts as a one-key mapping."""
    found = []
    for key, value in body.items():
        if key not in _SECTIONS:
            log.warning("skipping key %r in group %r: only vars, children and hosts are valid", key, group)
            continue
        if isinstance(value, str):
            value = {value: None}
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise InventoryError(f"group {group!r}: {key!r} must be a mapping, not {type(value).__name__}")
        found.append((key, value))
    return found


def _add_hosts(group: str, definition: Any, host_vars: Any, builder: InventoryBuilder) -> None:
    if not isinstance(definition, str):
        raise InventoryError(f"group {group!r}: host {definition!r} must be a string (quote numbers)")
    if host_vars is not None and not isinstance(host_vars, Mapping):
        raise InventoryError(f"host {definition!r}: vars must be a mapping, not {type(host_vars).__name__}")
    names, port = expand_host_definition(definition)
    for name in names:
        builder.add_host(name, group, port)
        for key, value in (host_vars or {}).items():
            builder.set_host_var(name, str(key), value)
