"""The panic signature of a dump: its panic string and top meaningful frames, addresses stripped.

Pure functions, no I/O: crash_triage groups hosts by it, from crash's `sys` and `bt` output.
"""

from __future__ import annotations

import re

FRAME = re.compile(r"^\s*#\d+\s+\[[0-9a-f]+\]\s+(\S+)\s+at\s", re.M)
PANIC = re.compile(r'PANIC:\s+"(.*)"')
# Frames that say how the kernel died, not why: left out of a signature.
GENERIC = re.compile(
    r"^(panic|vpanic|__crash_kexec|crash_kexec|machine_kexec|oops_end|die|__die|"
    r"delay_tsc|__preempt_count_add|native_.*|do_trap|do_error_trap|exc_.*|asm_exc_.*|"
    r"__warn|report_bug|handle_bug|dump_stack.*|show_stack|printk.*|_printk|vprintk.*)$"
)
USER_BOUNDARY = re.compile(r"^(do_syscall_64|do_syscall_x64|entry_SYSCALL.*|ret_from_fork.*)$")
TOP_FRAMES = 4


def signature(sys_text: str, bt_text: str) -> tuple[str | None, list[str], str]:
    """(panic string, top meaningful frames, signature): addresses and offsets stripped."""
    match = PANIC.search(sys_text)
    panic = _strip(match.group(1)) if match else None
    frames: list[str] = []
    for name in FRAME.findall(bt_text):
        name = re.sub(r"\.(cold|isra|constprop|part)(\.\d+)?$", "", name)
        if USER_BOUNDARY.match(name):
            break
        if not GENERIC.match(name) and name not in frames:
            frames.append(name)
        if len(frames) == TOP_FRAMES:
            break
    return panic, frames, f"{panic or 'no panic string'} | {' < '.join(frames) or 'no frames'}"


def _strip(text: str) -> str:
    text = re.sub(r"\+0x[0-9a-f]+/0x[0-9a-f]+", "", text)
    text = re.sub(r"\b(0x)?[0-9a-f]{12,16}\b", "ADDR", text)
    return text.replace("Kernel panic - not syncing: ", "").strip()
