"""`crashfleet bundle`: an MCP Bundle (.mcpb) Claude Desktop installs with one click.

The bundle is of server type "uv" (manifest 0.4): it carries crashfleet's sources and a pyproject.toml,
and the host's uv installs Python and the dependencies (pydantic, asyncssh... are compiled: a bundle
of wheels would not be portable).
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crashfleet import agent, controller, inventory

from .bundle import reproducible_zip
from .icon import BUNDLE_SIZE, icon_png
from .prompts import PLAYBOOKS

DATA_PATTERNS = ("*.bt", "*.sha256", "*.html", "*.js", "*.css", "*.json")  # pyproject.toml's (a test keeps them equal)
MANIFEST_VERSION = "0.4"  # the first with server type "uv"
LAUNCHER = '''"""crashfleet's MCP server (stdio) as Claude Desktop starts it from the bundle."""
import os
import sys

# Optional settings left empty in Claude Desktop arrive as "" (or unreplaced): use crashfleet's defaults.
for name in [k for k, v in os.environ.items() if k.startswith("CRASHFLEET_") and (not v.strip() or "${" in v)]:
    del os.environ[name]
from crashfleet.controller.cli import main

sys.exit(main(["serve", *sys.argv[1:]]))
'''
USER_CONFIG: dict[str, dict[str, Any]] = {
    "inventory": {
        "type": "file",
        "title": "Ansible inventory",
        "description": "The inventory (YAML or INI) naming your hosts; without it crashfleet sees only this machine",
        "required": False,
    },
    "known_hosts": {
        "type": "file",
        "title": "known_hosts file",
        "description": "Host keys crashfleet verifies against (OpenSSH format)",
        "default": "${HOME}/.ssh/known_hosts",
        "required": False,
    },
    "ssh_key": {
        "type": "file",
        "title": "SSH private key",
        "description": "Key for hosts without ansible_ssh_private_key_file (else ssh-agent and ~/.ssh)",
        "sensitive": True,
        "required": False,
    },
    "fanout": {
        "type": "number",
        "title": "Fan-out width",
        "description": "Hosts worked on at once",
        "default": 64,
        "min": 1,
        "max": 4096,
        "required": False,
    },
}
ENV = {
    "CRASHFLEET_INVENTORY": "${user_config.inventory}",
    "CRASHFLEET_SSH_KNOWN_HOSTS": "${user_config.known_hosts}",
    "CRASHFLEET_SSH_KEY": "${user_config.ssh_key}",
    "CRASHFLEET_FANOUT": "${user_config.fanout}",
}


def manifest(tools: list[dict[str, str]]) -> dict[str, Any]:
    version = importlib.metadata.version("crashfleet")
    return {
        "manifest_version": MANIFEST_VERSION,
        "name": "crashfleet",
        "display_name": "crashfleet",
        "version": version,
        "description": importlib.metadata.metadata("crashfleet")["Summary"],
        "long_description": "Incident response on many Linux hosts over SSH: crash and drgn on kernel dumps, "
        "bpftrace merged fleet-wide, two-host tcpdump captures, grouped answers.",
        "author": {"name": "crashfleet authors"},
        "license": "Apache-2.0",
        "icon": "icon.png",
        "keywords": ["linux", "incident-response", "ssh", "crash", "drgn", "bpftrace", "tcpdump"],
        "server": {
            "type": "uv",
            "entry_point": "server/main.py",
            "mcp_config": {
                "command": "uv",
                "args": ["run", "--quiet", "--directory", "${__dirname}", "server/main.py"],
                "env": dict(ENV),
            },
        },
        "tools": tools,
        "tools_generated": False,
        "prompts": [_prompt(p.name) for p in PLAYBOOKS],
        "user_config": USER_CONFIG,
        "compatibility": {"platforms": ["linux", "darwin"], "runtimes": {"python": ">=3.11"}},
    }


def _prompt(name: str) -> dict[str, Any]:
    playbook = next(p for p in PLAYBOOKS if p.name == name)
    names = [arg for arg, _, _ in playbook.arguments]
    return {
        "name": name,
        "description": playbook.description,
        "arguments": names,
        "text": playbook.render({arg: "${arguments.%s}" % arg for arg in names}),
    }


def pyproject() -> str:
    """The bundle's own pyproject.toml: this build's dependencies, the three source trees mapped as in ours."""
    deps = [r for r in importlib.metadata.requires("crashfleet") or [] if "extra ==" not in r]
    packages = sorted(name for name, _ in _packages())
    return "\n".join(
        [
            "[build-system]",
            'requires = ["setuptools>=68", "wheel"]',
            'build-backend = "setuptools.build_meta"',
            "",
            "[project]",
            'name = "crashfleet"',
            f'version = "{importlib.metadata.version("crashfleet")}"',
            'requires-python = ">=3.11"',
            f"dependencies = {json.dumps(deps)}",
            "",
            "[project.scripts]",
            'crashfleet = "crashfleet.controller.cli:main"',
            "",
            "[tool.setuptools]",
            'package-dir = { "crashfleet.controller" = "controller", "crashfleet.agent" = "agent", '
            '"crashfleet.inventory" = "inventory" }',
            f"packages = {json.dumps(packages)}",
            "",
            "[tool.setuptools.package-data]",
            f'"*" = {json.dumps(list(DATA_PATTERNS))}',
            "",
        ]
    )


def _packages() -> Iterator[tuple[str, Path]]:
    """Every folder of the three trees, as setup.py finds them (folders without __init__.py too)."""
    for module, top in ((controller, "controller"), (agent, "agent"), (inventory, "inventory")):
        root = Path(next(iter(module.__path__)))
        for folder in sorted({root, *(p for p in root.rglob("*") if p.is_dir())}):
            if "__pycache__" not in folder.parts:
                yield ".".join(["crashfleet", top, *folder.relative_to(root).parts]), folder


def _sources() -> Iterator[tuple[str, bytes]]:
    for module, top in ((controller, "controller"), (agent, "agent"), (inventory, "inventory")):
        root = Path(next(iter(module.__path__)))
        for path in sorted(root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyz"):
                yield f"{top}/{path.relative_to(root).as_posix()}", path.read_bytes()


def members(tools: list[dict[str, str]]) -> list[tuple[str, bytes]]:
    files = [
        ("manifest.json", json.dumps(manifest(tools), indent=2).encode() + b"\n"),
        ("icon.png", icon_png(BUNDLE_SIZE)),
        ("pyproject.toml", pyproject().encode()),
        ("server/main.py", LAUNCHER.encode()),
        (".mcpbignore", b".venv/\n__pycache__/\n*.pyc\nserver/lib/\nserver/venv/\n"),
    ]
    return files + list(_sources())


def write(path: Path, tools: list[dict[str, str]]) -> int:
    """Write the .mcpb (a zip) atomically; its size in bytes."""
    data = reproducible_zip(list(members(tools)))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return len(data)
