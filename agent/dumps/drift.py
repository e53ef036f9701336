"""crash older than the kernel it reads: say so at open instead of letting task lists lie.

crash 8.0.2 reads a 6.1 kernel's `sys`, `bt` and `log` right but finds 2 tasks where
there are ~50 ("active task ... not found in PID hash"). drgn follows the kernel's own
types, so its count is the reference when the two differ.
"""

from __future__ import annotations

import re
from typing import List, Optional

# crash's own words when its idea of the kernel's structures is off
DRIFT = re.compile(
    r"not found in PID hash|invalid structure (member|size)|cannot determine|"
    r"unexpected (value|size)|cannot resolve",
    re.I,
)
TASKS = re.compile(r"^\s*TASKS:\s*(\d+)\s*$", re.M)
# crash counts one idle (swapper) task per cpu; drgn's for_each_task walks pids only
COUNT_CODE = "len(list(for_each_task(prog))) + len(list(for_each_online_cpu(prog)))"
SHOWN = 2  # crash's warning lines quoted in the note


def crash_warnings(banner: str) -> List[str]:
    """crash's start-up warnings that point at a version mismatch."""
    return [line.strip() for line in banner.splitlines() if line.lstrip().startswith("WARNING:") and DRIFT.search(line)]


def crash_tasks(sys_text: str) -> Optional[int]:
    match = TASKS.search(sys_text)
    return int(match.group(1)) if match else None


def note(
    warnings: List[str], crash_count: Optional[int], drgn_count: Optional[int], release: Optional[str]
) -> Optional[str]:
    """One short warning naming the drift and what to use instead, or None when all agree."""
    differ = crash_count is not None and drgn_count is not None and crash_count != drgn_count
    if not warnings and not differ:
        return None
    parts: List[str] = []
    if differ:
        parts.append("it counts %d tasks where drgn counts %d" % (crash_count or 0, drgn_count or 0))
    if warnings:
        parts.append("it warned: " + "; ".join(warnings[:SHOWN]))
    return (
        "crash does not fully understand this kernel (%s): %s. Its task lists (ps, foreach, bt -a) may "
        "miss tasks: use drgn_run (for_each_task(prog)) for those." % (release or "its release", "; ".join(parts))
    )
