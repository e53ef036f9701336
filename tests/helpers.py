"""Process inspection shared by tests: find what crashfleet started, by /proc."""

from __future__ import annotations

import os


def cmdlines() -> dict[int, str]:
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                raw = handle.read()
            with open(f"/proc/{entry}/stat", "rb") as handle:
                state = handle.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if raw and state != b"Z":
            found[int(entry)] = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def agent_pids(marker: str) -> list[int]:
    """Live agent processes whose command line mentions `marker` (a rig or agent dir)."""
    return [pid for pid, cmd in cmdlines().items() if "crashfleet-agent-" in cmd and marker in cmd]


def pids_matching(*words: str) -> list[int]:
    return [pid for pid, cmd in cmdlines().items() if all(w in cmd for w in words) and pid != os.getpid()]
