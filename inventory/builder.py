"""Accumulate hosts, groups and vars from any source, then freeze an Inventory.

Parsers only record what a file says; this module owns Ansible's rules for
what that means: implicit 'all'/'ungrouped' membership, group depth, cycle
detection and variable precedence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import InventoryError
from .model import Group, Host, Inventory, magic_vars


@dataclass
class _GroupDraft:
    name: str
    hosts: list[str] = field(default_factory=list)
    members: set[str] = field(default_factory=set)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    inline_vars: dict[str, Any] = field(default_factory=dict)
    file_vars: dict[str, Any] = field(default_factory=dict)
    priority: int = 1

    def join(self, host: str) -> None:
        if host not in self.members:
            self.members.add(host)
            self.hosts.append(host)


@dataclass
class _HostDraft:
    name: str
    inline_vars: dict[str, Any] = field(default_factory=dict)
    file_vars: dict[str, Any] = field(default_factory=dict)


class InventoryBuilder:
    """Mutable inventory under construction; ``current_source`` tags new hosts."""

    def __init__(self) -> None:
        self.groups: dict[str, _GroupDraft] = {}
        self.hosts: dict[str, _HostDraft] = {}
        self.current_source: str | None = None
        self.add_group("all")
        self.add_group("ungrouped")
        self.add_child("all", "ungrouped")

    def add_group(self, name: str) -> str:
        if not name:
            raise InventoryError("empty group name")
        self.groups.setdefault(name, _GroupDraft(name))
        return name

    def add_host(self, name: str, group: str | None = None, port: int | None = None) -> None:
        if not name:
            raise InventoryError("empty host name")
        if name not in self.hosts:  # as in Ansible, a port only counts on first definition
            self.hosts[name] = self._new_host(name)
            if port is not None:
                self.hosts[name].inline_vars["ansible_port"] = port
        if group is not None:
            self.groups[group].join(name)

    def add_child(self, parent: str, child: str) -> None:
        """Make ``child`` a subgroup; refuse edges that would make a cycle."""
        for name in (parent, child):
            if name not in self.groups:
                raise InventoryError(f"{name!r} is not a known group")
        if child == parent or child in self._ancestors(parent):
            raise InventoryError(f"group {child!r} as a child of {parent!r} makes a cycle")
        if child not in self.groups[parent].children:
            self.groups[parent].children.append(child)
            self.groups[child].parents.append(parent)

    def set_group_var(self, group: str, key: str, value: Any) -> None:
        """Inline group var; ``ansible_group_priority`` is a setting, not a var."""
        if key != "ansible_group_priority":
            self.groups[group].inline_vars[key] = value
            return
        try:
            self.groups[group].priority = int(value)
        except (TypeError, ValueError):
            raise InventoryError(f"group {group!r}: ansible_group_priority {value!r} is not an integer") from None

    def set_host_var(self, host: str, key: str, value: Any) -> None:
        self.hosts[host].inline_vars[key] = value

    def add_group_file_vars(self, group: str, data: dict[str, Any]) -> None:
        self.groups[group].file_vars.update(data)

    def add_host_file_vars(self, host: str, data: dict[str, Any]) -> None:
        self.hosts[host].file_vars.update(data)

    def build(self, source: str | None) -> Inventory:
        self._reconcile()
        depth = self._depths()
        groups = {name: _freeze_group(g) for name, g in self.groups.items()}
        hosts = {name: self._freeze_host(h, depth) for name, h in self.hosts.items()}
        return Inventory(source=source, hosts=hosts, groups=groups)

    def _new_host(self, name: str) -> _HostDraft:
        source = self.current_source
        directory = None if source is None else os.path.dirname(source)
        return _HostDraft(name, {"inventory_file": source, "inventory_dir": directory})

    def _ancestors(self, group: str) -> set[str]:
        found: set[str] = set()
        pending = list(self.groups[group].parents)
        while pending:
            name = pending.pop()
            if name not in found:
                found.add(name)
                pending.extend(self.groups[name].parents)
        return found

    def _reconcile(self) -> None:
        """Ansible's reconcile_inventory: parentless groups join 'all', lone hosts 'ungrouped'."""
        for name, group in self.groups.items():
            if name != "all" and not group.parents:
                self.add_child("all", name)
        ungrouped = self.groups["ungrouped"]
        for host in self.hosts:
            others = self._host_groups(host) - {"all", "ungrouped"}
            if others and host in ungrouped.members:
                ungrouped.members.discard(host)
                ungrouped.hosts.remove(host)
            elif not others:
                ungrouped.join(host)

    def _host_groups(self, host: str) -> set[str]:
        """Every group holding ``host``, directly or through a subgroup."""
        direct = [name for name, g in self.groups.items() if host in g.members]
        return set(direct).union(*(self._ancestors(name) for name in direct))

    def _depths(self) -> dict[str, int]:
        """Longest path from 'all', which orders groups for variable precedence."""
        depth: dict[str, int] = {}

        def visit(name: str) -> int:
            if name not in depth:
                parents = self.groups[name].parents
                depth[name] = max((visit(p) + 1 for p in parents), default=0)
            return depth[name]

        for name in self.groups:
            visit(name)
        return depth

    def _freeze_host(self, draft: _HostDraft, depth: dict[str, int]) -> Host:
        member_of = self._host_groups(draft.name) - {"all"}
        ordered = sorted(member_of, key=lambda g: (depth[g], self.groups[g].priority, g))
        groups = ("all", *ordered)
        return Host(draft.name, MappingProxyType(self._effective_vars(draft, ordered, groups)), groups)

    def _effective_vars(self, draft: _HostDraft, ordered: list[str], groups: tuple[str, ...]) -> dict[str, Any]:
        """Ansible's default precedence, later layers winning (replace, not deep merge)."""
        layers = [self.groups["all"].inline_vars]
        layers += [self.groups[g].inline_vars for g in ordered]
        layers.append(self.groups["all"].file_vars)
        layers += [self.groups[g].file_vars for g in ordered]
        layers += [draft.inline_vars, draft.file_vars, magic_vars(draft.name, groups)]
        merged: dict[str, Any] = {}
        for layer in layers:
            merged.update(layer)
        return merged


def _freeze_group(draft: _GroupDraft) -> Group:
    merged = {**draft.inline_vars, **draft.file_vars}
    return Group(draft.name, list(draft.hosts), list(draft.children), merged)
