"""Dynamic inventories (scripts, plugin configs) read through ``ansible-inventory``.

Rather than re-implementing every inventory plugin, the real Ansible resolves
the source and we rebuild from its ``--list`` JSON, whose hostvars are already
the effective per-host variables.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .builder import InventoryBuilder
from .errors import InventoryError

TIMEOUT_SECONDS = 60
_STDERR_TAIL = 2000
# Without the two *_FAILED settings ansible-inventory merely warns and exits 0.
_ANSIBLE_ENV = {
    "ANSIBLE_NOCOLOR": "1",
    "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "True",
    "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
}


def find_ansible_inventory() -> str | None:
    """``ansible-inventory`` on PATH, else beside this Python (an unactivated venv)."""
    found = shutil.which("ansible-inventory")
    if found:
        return found
    sibling = Path(sys.executable).parent / "ansible-inventory"
    return str(sibling) if os.access(sibling, os.X_OK) else None


def parse_dynamic_inventory(path: Path, builder: InventoryBuilder) -> None:
    add_listing(run_ansible_inventory(path), path, builder)


def run_ansible_inventory(path: Path) -> dict[str, Any]:
    tool = find_ansible_inventory()
    if tool is None:
        raise InventoryError(
            "is a dynamic inventory (script or plugin config), which needs ansible-inventory: "
            "install ansible-core (pip install ansible-core)",
            path,
        )
    env = {**os.environ, **_ANSIBLE_ENV}
    try:
        done = subprocess.run(
            [tool, "-i", str(path), "--list"],
            capture_output=True,
            text=True,
            env=env,
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InventoryError(f"ansible-inventory took longer than {TIMEOUT_SECONDS} s", path) from None
    except OSError as exc:
        raise InventoryError(f"cannot run {tool}: {exc}", path) from None
    if done.returncode != 0:
        tail = re.sub(r"\n\s*\n", "\n", done.stderr.strip())[-_STDERR_TAIL:]
        raise InventoryError(f"ansible-inventory failed (exit {done.returncode}): {tail}", path)
    return _decode(done.stdout, path)


def _decode(stdout: str, path: Path) -> dict[str, Any]:
    try:
        data = json.loads(stdout)
    except ValueError as exc:
        raise InventoryError(f"ansible-inventory printed invalid JSON: {exc}", path) from None
    if not isinstance(data, dict):
        raise InventoryError("ansible-inventory printed JSON that is not an object", path)
    return data


def add_listing(data: Mapping[str, Any], path: Path, builder: InventoryBuilder) -> None:
    """Add ``ansible-inventory --list`` output: groups, then children, then hostvars."""
    groups = {name: body for name, body in data.items() if name != "_meta" and isinstance(body, Mapping)}
    try:
        for name, body in groups.items():
            builder.add_group(name)
            for host in _names(body.get("hosts")):
                builder.add_host(host, name)
            for key, value in dict(body.get("vars") or {}).items():
                builder.set_group_var(name, str(key), value)
        for name, body in groups.items():
            for child in _names(body.get("children")):
                builder.add_group(child)
                builder.add_child(name, child)
        for host, host_vars in dict(data.get("_meta", {}).get("hostvars") or {}).items():
            builder.add_host(host)
            for key, value in dict(host_vars or {}).items():
                builder.set_host_var(host, str(key), value)
    except InventoryError as exc:
        raise exc.located(path) from None


def _names(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []
