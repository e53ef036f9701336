"""``group_vars/`` and ``host_vars/`` beside an inventory (Ansible's host_group_vars).

For each name the first of NAME, NAME.yml, NAME.yaml, NAME.json wins; if it
is a directory, every file inside (sorted, recursively) is merged.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .builder import InventoryBuilder
from .errors import InventoryError
from .yamlfile import load_yaml

_EXTENSIONS = ("", ".yml", ".yaml", ".json")


def apply_vars_dirs(base: Path, builder: InventoryBuilder) -> None:
    """Load group_vars/host_vars found in ``base`` into the builder's file layers."""
    group_dir, host_dir = base / "group_vars", base / "host_vars"
    if group_dir.is_dir():
        for group in list(builder.groups):
            builder.add_group_file_vars(group, load_vars_for(group_dir, group))
    if host_dir.is_dir():
        for host in list(builder.hosts):
            if not host.startswith("/"):
                builder.add_host_file_vars(host, load_vars_for(host_dir, host))


def load_vars_for(directory: Path, name: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for path in _vars_files(directory, name):
        data = load_yaml(path)
        if data is None:
            continue
        if not isinstance(data, Mapping):
            raise InventoryError(f"vars file must hold a mapping, not {type(data).__name__}", path)
        merged.update(data)
    return merged


def _vars_files(directory: Path, name: str) -> list[Path]:
    for ext in _EXTENSIONS:
        candidate = directory / f"{name}{ext}"
        if candidate.is_dir():
            return _files_under(candidate)
        if candidate.exists():
            return [candidate]
    return []


def _files_under(directory: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name.endswith("~"):
            continue
        if entry.is_dir() and not entry.suffix:
            found.extend(_files_under(entry))
        elif entry.is_file() and entry.suffix in _EXTENSIONS:
            found.append(entry)
    return found
