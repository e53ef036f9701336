"""The inventory data model: hosts, groups and the inventory that holds them."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import patterns
from .address import is_ip_literal
from .convert import ansible_bool, port_number
from .errors import InventoryError

DEFAULT_AGENT_DIR = "~/.cache/crashfleet"
_AUTO_PYTHON = frozenset({"auto", "auto_silent", "auto_legacy", "auto_legacy_silent"})


@dataclass(frozen=True)
class Host:
    """One inventory host with its effective (precedence-resolved) variables."""

    name: str
    vars: Mapping[str, Any] = field(hash=False)
    groups: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        """Where to connect: ``ansible_host`` (or its older alias), else the name."""
        value = self._last("ansible_host", "ansible_ssh_host")
        return self.name if value is None else str(value)

    @property
    def port(self) -> int | None:
        """The SSH port, or None to let ssh decide."""
        value = self._last("ansible_port", "ansible_ssh_port")
        if value is None:
            return None
        try:
            return port_number(value)
        except ValueError as exc:
            raise InventoryError(f"host {self.name!r}: bad ansible_port: {exc}") from None

    @property
    def user(self) -> str | None:
        value = self._last("ansible_user", "ansible_ssh_user")
        return None if value is None else str(value)

    @property
    def key_file(self) -> str | None:
        value = self._last("ansible_private_key_file", "ansible_ssh_private_key_file")
        return None if value is None else os.path.expanduser(str(value))

    @property
    def python(self) -> str:
        """The remote interpreter; Ansible's discovery modes mean plain python3 here."""
        value = self.vars.get("ansible_python_interpreter")
        if value is None or str(value) in _AUTO_PYTHON:
            return "python3"
        return str(value)

    @property
    def become(self) -> bool:
        value = self.vars.get("ansible_become")
        if value is None:
            return False
        try:
            return ansible_bool(value)
        except ValueError as exc:
            raise InventoryError(f"host {self.name!r}: bad ansible_become: {exc}") from None

    @property
    def connection(self) -> str:
        """Connection type; 'local' means run without SSH ('smart' is Ansible's ssh)."""
        value = str(self.vars.get("ansible_connection") or "ssh")
        value = value.removeprefix("ansible.builtin.")
        return "ssh" if value == "smart" else value

    @property
    def agent_dir(self) -> str:
        return str(self.vars.get("crashfleet_agent_dir") or DEFAULT_AGENT_DIR)

    def _last(self, *names: str) -> Any:
        """Ansible's connection options take the last alias that is defined."""
        found = None
        for name in names:
            if self.vars.get(name) is not None:
                found = self.vars[name]
        return found


@dataclass
class Group:
    """A group as written in the inventory: direct members and its own vars."""

    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)


@dataclass
class Inventory:
    """A parsed inventory; ``source`` is None for the built-in default."""

    source: str | None
    hosts: dict[str, Host]
    groups: dict[str, Group]

    def match(self, pattern: str) -> list[Host]:
        """Hosts selected by an Ansible host pattern, in the order Ansible lists them.

        Raises PatternError for a malformed pattern or one that selects nothing.
        """
        names = patterns.select(pattern, list(self.hosts), self.groups)
        return [self.hosts.get(name) or self._implicit_localhost(name) for name in names]

    def group_names(self) -> list[str]:
        return sorted(self.groups)

    def _implicit_localhost(self, name: str) -> Host:
        """Ansible's implicit localhost: 'all' vars, local connection, in no group."""
        all_vars = self.groups["all"].vars if "all" in self.groups else {}
        merged = {**all_vars, "ansible_connection": "local", **magic_vars(name, ())}
        return Host(name, merged, ())


def magic_vars(name: str, groups: tuple[str, ...]) -> dict[str, Any]:
    """The per-host names Ansible derives itself (they override inventory values)."""
    short = name if is_ip_literal(name) else name.split(".")[0]
    return {
        "inventory_hostname": name,
        "inventory_hostname_short": short,
        "group_names": sorted(g for g in groups if g != "all"),
    }
