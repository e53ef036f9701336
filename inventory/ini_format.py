"""Ansible's INI inventory format, parsed line by line as the ``ini`` plugin does.

Values go through ``ast.literal_eval`` like Ansible's, so ``a=1`` is an int,
``b="x y"`` a string and ``c=yes`` stays the string 'yes'.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .builder import InventoryBuilder
from .errors import InventoryError
from .ranges import expand_host_definition

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")
_COMMENT = (";", "#")


@dataclass
class _Pending:
    """A group referenced (as a child, or by :vars) before it was declared."""

    line: int
    state: str
    parents: list[str] = field(default_factory=list)


@dataclass
class _IniParser:
    builder: InventoryBuilder
    group: str = "ungrouped"
    state: str = "hosts"
    pending: dict[str, _Pending] = field(default_factory=dict)

    def feed(self, text: str, number: int) -> None:
        line = text.strip()
        if not line or line.startswith(_COMMENT):
            return
        section = _SECTION.match(line)
        if section:
            self._enter(section.group(1), section.group(2) or "hosts", number)
        elif line.startswith("[") and line.endswith("]"):
            raise InventoryError(f"invalid section header {line!r} (no spaces or other characters allowed)")
        elif self.state == "hosts":
            self._host_line(line)
        elif self.state == "vars":
            key, value = _variable(line)
            self.builder.set_group_var(self.group, key, value)
        else:
            self._child_line(line, number)

    def _enter(self, group: str, state: str, number: int) -> None:
        if state not in ("hosts", "children", "vars"):
            raise InventoryError(f"section [{group}:{state}] has unknown type {state!r}")
        self.group, self.state = group, state
        if group not in self.builder.groups:
            if state == "vars" and group not in self.pending:
                self.pending[group] = _Pending(number, "vars")
            self.builder.add_group(group)
        waiting = self.pending.get(group)
        if waiting is not None and state != "vars":
            if waiting.state == "children":
                self._resolve_children(group)
            else:
                del self.pending[group]

    def _resolve_children(self, group: str) -> None:
        for parent in self.pending[group].parents:
            self.builder.add_child(parent, group)
            parent_waiting = self.pending.get(parent)
            if parent_waiting is not None and parent_waiting.state == "children":
                self._resolve_children(parent)
        self.pending.pop(group, None)

    def _host_line(self, line: str) -> None:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise InventoryError(f"cannot parse host line {line!r}: {exc}") from None
        if not tokens:
            return
        names, port = expand_host_definition(tokens[0])
        assignments = [_assignment(token, line) for token in tokens[1:]]
        for name in names:
            self.builder.add_host(name, self.group, port)
            for key, value in assignments:
                self.builder.set_host_var(name, key, value)

    def _child_line(self, line: str, number: int) -> None:
        m = _GROUP_NAME.match(line)
        if not m:
            raise InventoryError(f"expected a group name, got {line!r}")
        child = m.group(1)
        if child in self.builder.groups:
            self.builder.add_child(self.group, child)
        elif child in self.pending:
            self.pending[child].parents.append(self.group)
        else:
            self.pending[child] = _Pending(number, "children", [self.group])

    def finish(self, path: Path) -> None:
        """Report the first group that was referenced but never declared."""
        for name, waiting in self.pending.items():
            if waiting.state == "vars":
                reason = f"section [{name}:vars] is for undefined group {name!r}"
            else:
                reason = f"section [{waiting.parents[-1]}:children] includes undefined group {name!r}"
            raise InventoryError(reason, path, waiting.line)


def parse_ini_inventory(text: str, path: Path, builder: InventoryBuilder) -> None:
    parser = _IniParser(builder)
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            parser.feed(line, number)
        except InventoryError as exc:
            raise exc.located(path, number) from None
    parser.finish(path)


def _assignment(token: str, line: str) -> tuple[str, Any]:
    if "=" not in token:
        raise InventoryError(f"expected key=value host variable, got {token!r} in {line!r}")
    key, value = token.split("=", 1)
    return key, parse_value(value)


def _variable(line: str) -> tuple[str, Any]:
    if "=" not in line:
        raise InventoryError(f"expected key=value, got {line!r}")
    key, value = (part.strip() for part in line.split("=", 1))
    return key, parse_value(value)


def parse_value(text: str) -> Any:
    """Python-literal values become typed; anything else stays the raw string."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text
    return _plain(value)


def _plain(value: Any) -> Any:
    """Map literal_eval's extra types onto what YAML/JSON vars can hold, as Ansible does."""
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if value is ... or isinstance(value, complex):
        return "..." if value is ... else str(value)
    return value
