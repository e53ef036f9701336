"""The kernel log kdump saved beside a dump: a panic summary without opening the dump.

kdump-tools writes /var/crash/<ts>/dmesg.<ts> beside dump.<ts>; RHEL's kdump writes
vmcore-dmesg.txt beside vmcore. Reading its tail costs a read, not a crash start.
"""

from __future__ import annotations

import os
import re
from typing import Any, Dict, List, Optional

TAIL_BYTES = 256 << 10
CONTEXT_LINES = 12
TRACE_LINES = 40
LINE_CHARS = 300
PANIC = re.compile(r"Kernel panic - not syncing: (.*)$")
# The lines that say what went wrong, before the panic line (oops, BUG, sysrq, RIP).
CAUSE = re.compile(r"(BUG:|Oops|general protection|sysrq: |RIP: |Call Trace|WARNING:|Kernel panic)")


def beside(dump_path: str) -> Optional[str]:
    """The dmesg file kdump wrote for this dump, if there is one."""
    directory, name = os.path.split(dump_path)
    if name.startswith("dump."):
        candidate = os.path.join(directory, "dmesg." + name[len("dump.") :])
    elif name.startswith("vmcore"):
        candidate = os.path.join(directory, "vmcore-dmesg.txt")
    else:
        return None
    return candidate if os.path.isfile(candidate) else None


def summary(path: str) -> Dict[str, Any]:
    """The panic message and the log lines leading to it (the last panic in the file)."""
    lines = _tail(path)
    at = max((i for i, line in enumerate(lines) if PANIC.search(line)), default=None)
    if at is None:
        return {"path": path, "panic": None, "lines": [line[:LINE_CHARS] for line in lines[-CONTEXT_LINES:]]}
    match = PANIC.search(lines[at])
    assert match is not None
    before = [line for line in lines[max(0, at - 80) : at] if CAUSE.search(line)][-CONTEXT_LINES:]
    after: List[str] = []
    for line in lines[at + 1 : at + 1 + TRACE_LINES]:  # the panicking task's stack, printed after
        after.append(line)
        if line.rstrip().endswith("</TASK>"):
            break
    return {
        "path": path,
        "panic": match.group(1).strip()[:LINE_CHARS],
        "lines": [line[:LINE_CHARS] for line in [*before, lines[at], *after]],
    }


def _tail(path: str) -> List[str]:
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(max(0, size - TAIL_BYTES))
        data = handle.read(TAIL_BYTES)
    return data.decode("utf-8", "replace").splitlines()
