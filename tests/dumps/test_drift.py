"""The drift note on crash's own words (captured from crash 8.0.2 on the fixture's 6.1 dump).

Agreement cannot be produced for real with the crash installed here (it always misreads
this kernel), so the quiet case is checked on the pure function."""

from __future__ import annotations

from crashfleet.agent.dumps import drift

BANNER = """WARNING: active task ffff888003dfe000 on cpu 0 not found in PID hash

crash: cannot determine idle task addresses from init_tasks[] or runqueues[]
WARNING: vmcore: may be truncated or incomplete
"""
SYS = """      KERNEL: /var/crash/vmlinux-6.1.0-56-cloud-amd64
        CPUS: 1
       TASKS: 2
    NODENAME: (none)
"""


def test_crash_warnings_keep_only_structure_drift() -> None:
    assert drift.crash_warnings(BANNER) == ["WARNING: active task ffff888003dfe000 on cpu 0 not found in PID hash"]
    assert drift.crash_tasks(SYS) == 2 and drift.crash_tasks("no summary") is None


def test_note_names_both_counts_or_stays_quiet() -> None:
    note = drift.note(drift.crash_warnings(BANNER), 2, 52, "6.1.0-56-cloud-amd64")
    assert note and "counts 2 tasks where drgn counts 52" in note and "PID hash" in note and "drgn_run" in note
    assert drift.note([], 52, 52, "6.1") is None  # crash and drgn agree: nothing to say
    only_count = drift.note([], 2, 52, "6.1")
    assert only_count and "it warned" not in only_count
    assert drift.note([], 2, None, "6.1") is None  # drgn could not count (flattened dump): crash's word only
