"""dumps: kernel crash dumps where they lie, read with crash and drgn (agent/dumps/)."""

from __future__ import annotations

import ast

from . import Domain

DOMAIN = Domain(
    name="dumps",
    code=".dumps.service",
    policy={
        "dump_dirs": None,  # dirs dumps may be read from; None: /var/crash + kdump's path
        "vmlinux_dirs": [],  # extra dirs searched for a dump's vmlinux
        "vmlinux_standard_dirs": True,  # also search /usr/lib/debug and /boot (after the dump's dir and vmlinux_dirs)
        "live_kernel": False,  # True: crash_open(live=true) reads the running kernel (/proc/kcore)
        "drgn_code": True,  # False: drgn runs only the bundled analysis scripts
        "drgn_python": None,  # interpreter for drgn workers; None: the first recent drgn found
        "drgn_venv": "/opt/crashfleet/drgn",  # where the role installs its pinned drgn (crashfleet_drgn_venv)
        # servers for a dump's vmlinux by build id; None: /etc/debuginfod/*.urls + DEBUGINFOD_URLS
        "debuginfod_urls": None,
        "debuginfod_cache_dir": "/var/cache/crashfleet/debuginfod",  # where fetched debuginfo is kept
        "debuginfod_cache_bytes": 4 << 30,  # the cache's quota; the oldest entries go first to make room
        "pstore_dirs": None,  # a dumpless host's crash records; None: /sys/fs/pstore and systemd-pstore's copies
        "journal_dirs": None,  # journal dirs holding the previous boot's kernel log; None: the system journal
        "max_dump_sessions": 8,  # crash/drgn sessions open at once
        "dump_session_idle": 1800.0,  # seconds before an unused session is closed
    },
    # drgn's version is probed by the interpreter that will import it (facts.py, drgn_pick).
    tools={"crash": ["--version"], "drgn": ["--version"]},
    # python3-venv: the pinned PyPI drgn's venv (ansible/roles/crashfleet_agent/tasks/drgn.yml)
    packages={"Debian": ["crash", "makedumpfile", "python3-venv"], "RedHat": ["crash", "kexec-tools"]},
)


def describe_script(source: str) -> str:
    """An analysis script's description: its docstring's first line (here, not in agent/dumps: the
    controller describes its own scripts too, without importing the domain's code)."""
    try:
        doc = ast.get_docstring(ast.parse(source)) or ""
    except SyntaxError:
        return "(does not parse)"
    return doc.strip().splitlines()[0] if doc.strip() else "(no description)"
