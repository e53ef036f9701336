"""Entry points: decide what kind of inventory a path is and load it."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from .builder import InventoryBuilder
from .dynamic import parse_dynamic_inventory
from .errors import InventoryError
from .ini_format import parse_ini_inventory
from .model import Inventory
from .vars_dirs import apply_vars_dirs
from .yaml_format import parse_yaml_inventory
from .yamlfile import parse_yaml, read_text

YAML_EXTENSIONS = (".yml", ".yaml", ".json")
# Ansible's INVENTORY_IGNORE_EXTS and always-ignored names for directory sources.
_IGNORED_EXTENSIONS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry")
_IGNORED_NAMES = re.compile(r"^\.|^host_vars$|^group_vars$|^vars_plugins$")


def default_inventory() -> Inventory:
    """Just 'localhost' over a local connection, for when no inventory is given."""
    builder = InventoryBuilder()
    builder.add_host("localhost", "ungrouped")
    builder.set_host_var("localhost", "ansible_connection", "local")
    return builder.build(source=None)


def load_inventory(path: str | os.PathLike[str] | None) -> Inventory:
    """Read an Ansible inventory file or directory (None means the default)."""
    if path is None:
        return default_inventory()
    source = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    if not source.exists():
        raise InventoryError("inventory is missing (no such file or directory)", source)
    builder = InventoryBuilder()
    if source.is_dir():
        if not _parse_directory(source, builder):
            raise InventoryError("inventory directory holds no inventory files", source)
        apply_vars_dirs(source, builder)
    elif not _parse_file(source, builder):
        apply_vars_dirs(source.parent, builder)
    return builder.build(source=str(source))


def _parse_directory(directory: Path, builder: InventoryBuilder) -> bool:
    """Parse every inventory file below ``directory``; True if there was any."""
    parsed = False
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        if _IGNORED_NAMES.search(entry.name) or entry.name.endswith(_IGNORED_EXTENSIONS):
            continue
        if entry.is_dir():
            parsed = _parse_directory(entry, builder) or parsed
        else:
            _parse_file(entry, builder)
            parsed = True
    return parsed


def _parse_file(path: Path, builder: InventoryBuilder) -> bool:
    """Parse one file into the builder; True if it was dynamic (Ansible applied its vars)."""
    builder.current_source = str(path)
    if _is_program(path) or path.suffix == ".toml":
        parse_dynamic_inventory(path, builder)
        return True
    text = read_text(path)
    if path.suffix in YAML_EXTENSIONS:
        data = parse_yaml(text, path)
        if _is_plugin_config(data):
            parse_dynamic_inventory(path, builder)
            return True
        parse_yaml_inventory(data, path, builder)
    elif not path.suffix:
        return _parse_unknown(text, path, builder)
    else:
        parse_ini_inventory(text, path, builder)
    return False


def _parse_unknown(text: str, path: Path, builder: InventoryBuilder) -> bool:
    """No extension: YAML if it reads as a YAML mapping, else INI (Ansible tries both)."""
    data: object = None
    failure: InventoryError | None = None
    try:
        data = parse_yaml(text, path)
    except InventoryError as yaml_error:
        failure = yaml_error
    if _is_plugin_config(data):
        parse_dynamic_inventory(path, builder)
        return True
    if isinstance(data, Mapping):  # INI text never reads as a YAML mapping
        parse_yaml_inventory(data, path, builder)
        return False
    try:
        parse_ini_inventory(text, path, builder)
    except InventoryError as ini_error:
        if failure is None:
            raise
        note = f"(nor is it YAML: line {failure.line}: {failure.reason})"
        raise InventoryError(f"{ini_error.reason} {note}", path, ini_error.line) from None
    return False


def _is_program(path: Path) -> bool:
    """Executable and starts like a script or ELF binary.

    Ansible would also try an executable file as a script first; requiring a
    shebang keeps a static file with a stray +x bit from needing ansible-core.
    """
    if not os.access(path, os.X_OK):
        return False
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror or exc}", path) from None
    return head.startswith(b"#!") or head == b"\x7fELF"


def _is_plugin_config(data: object) -> bool:
    return isinstance(data, Mapping) and bool(data.get("plugin"))
