"""Panic signatures from crash's `sys` and `bt`: on the fixture vmcores, and on real-world-shaped text.

tests/unit/data/README.md says where each crash-*.txt comes from.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crashfleet.controller.tools.dumps_signature import signature

DATA = Path(__file__).parent / "data"


def crash(case: str) -> tuple[str, str]:
    """(sys, bt) of one case."""
    return (DATA / f"crash-{case}-sys.txt").read_text(), (DATA / f"crash-{case}-bt.txt").read_text()


@pytest.mark.parametrize(
    "case, panic, frames",
    [
        # Fixture vmcore: `panic` is left out, __handle_sysrq.cold loses its suffix, four frames at most.
        (
            "sysrq",
            "sysrq triggered crash",
            ["sysrq_handle_crash", "__handle_sysrq", "write_sysrq_trigger", "proc_reg_write"],
        ),
        # Fixture vmcore: frames stop at do_syscall_64; the stale ones crash lists after it are not the cause.
        ("initexit", "Attempted to kill init! exitcode=0x00000300", ["do_group_exit", "__x64_sys_exit_group"]),
        # BUG(): the trap frames are left out; .cold, .part.0 (and its caller, the same function) and
        # .constprop.0 name one function each.
        (
            "bug-ext4",
            "kernel BUG at fs/ext4/extents_status.c:2063!",
            [
                "ext4_es_insert_delayed_block",
                "ext4_insert_delayed_block",
                "ext4_da_map_blocks",
                "ext4_da_get_block_prep",
            ],
        ),
        # A NULL dereference in a module: the address is ADDR, .isra.0 goes. page_fault_oops is not in
        # GENERIC, so it stays (as the code has it).
        (
            "oops-module",
            "BUG: kernel NULL pointer dereference, address: ADDR",
            ["page_fault_oops", "cfx_ring_push", "cfx_ioctl", "__x64_sys_ioctl"],
        ),
        # A kernel thread: the function's +off/size goes from the panic string; frames stop at ret_from_fork.
        (
            "stackprot-kthread",
            "stack-protector: Kernel stack is corrupted in: cfx_poll_thread [cfx]",
            ["__stack_chk_fail", "cfx_poll_thread", "kthread"],
        ),
    ],
)
def test_signature(case: str, panic: str, frames: list[str]) -> None:
    assert signature(*crash(case)) == (panic, frames, f"{panic} | {' < '.join(frames)}")


def test_no_address_survives() -> None:
    for case in ("sysrq", "initexit", "bug-ext4", "oops-module", "stackprot-kthread"):
        sig = signature(*crash(case))[2]
        assert "0xffff" not in sig and "ffffffff" not in sig and "+0x" not in sig, sig


def test_the_same_panic_on_two_hosts_has_one_signature() -> None:
    sys_text, bt = crash("sysrq")  # the paths, task address and stack differ from dump to dump
    other = sys_text.replace("/web01/", "/web02/")
    other_bt = bt.replace("ffff888003df8000", "ffff888004a1c000").replace("[ffffc90000013", "[ffffc90000027")
    assert signature(other, other_bt) == signature(sys_text, bt)


def test_nothing_to_go_on() -> None:
    assert signature("", "") == (None, [], "no panic string | no frames")
    sys_text, _ = crash("sysrq")
    assert signature(sys_text, "bt: cannot determine starting stack frame\n")[2] == "sysrq triggered crash | no frames"
