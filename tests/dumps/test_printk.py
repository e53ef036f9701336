"""agent/dumps/printk.py: the kernel log of a real ELF vmcore from its printk ring buffer, with
VMCOREINFO alone: the same bytes drgn's get_dmesg reads with the vmlinux, on a kernel booted without
KASLR (the kernel-image mapping) and with it plus a log buffer allocated at boot (page tables)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crashfleet.agent.dumps import printk
from tests.dumps.crash_kinds import ensure_kinds
from tests.dumps.crash_scenes import before_510

DRGN_DMESG = """import sys, drgn
from drgn.helpers.linux.printk import get_dmesg
prog = drgn.Program(); prog.set_core_dump(sys.argv[1]); prog.load_debug_info([sys.argv[2]])
sys.stdout.buffer.write(get_dmesg(prog))"""


@pytest.mark.parametrize("kind", ["softlockup_a", "gpf_kaslr"])
def test_the_log_is_what_drgn_reads_with_the_vmlinux(kind: str) -> None:
    kinds = ensure_kinds()
    vmcore = kinds.vmcore(kind)
    ours = printk.dmesg(str(vmcore))
    drgn = subprocess.run(
        [sys.executable, "-c", DRGN_DMESG, str(vmcore), str(kinds.vmlinux)], capture_output=True, check=True
    ).stdout
    assert ours == drgn and b"crashfleet fixture: panic " + kind.encode() in ours


def test_a_dump_without_the_layout_or_not_elf_is_unreadable_and_says_why(tmp_path: Path) -> None:
    kinds = ensure_kinds()
    with pytest.raises(printk.Unreadable, match="before 5.10"):
        printk.dmesg(str(before_510(kinds, "gpf")))
    with pytest.raises(printk.Unreadable, match="not an ELF dump"):
        printk.dmesg(str(kinds.kdump("null_deref")))


def test_a_dump_cut_short_reads_what_it_has() -> None:
    """The fixture's truncated dump keeps the kernel image and the log buffer: the log is whole."""
    kinds = ensure_kinds()
    assert b"sysrq: Trigger a crash" in printk.dmesg(str(kinds.base.truncated))
