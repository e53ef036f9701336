"""Crash titles from kernel logs (agent/dumps/oops.py): one case per kind, on real logs where this
rig makes them (tests/unit/data/oops/, README.md there and in tests/unit/data/), on texts written
from Linux v6.1's format strings for the others (tests/unit/oops_texts.py); then bad inputs: cut
off, interleaved, several reports, bytes that are not UTF-8, 100 MB, prefixes, nothing at all.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from crashfleet.agent.dumps.oops import parse, scan
from tests.unit import oops_texts as texts

DATA = Path(__file__).parent / "data"
OOPS = DATA / "oops"
# What a title must never hold: an address, an offset, a time, a CPU number, a kernel release.
NUMBERY = re.compile(r"0x|\+0x|[0-9a-f]{6,}|\d+\.\d+|CPU#?\s*\d|PID|\[\s*\d")


def expect(
    title: str | None,
    culprit: str | None = None,
    module: str | None = None,
    frames: list[str] | None = None,
    taint: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    return {"title": title, "culprit": culprit, "module": module, "frames": frames, "taint": taint, "detail": detail}


def check(answer: dict[str, Any], want: dict[str, Any]) -> None:
    """One clean report: the title and what it came from, no note, nothing cut or mixed."""
    assert answer["title"] == want["title"], answer
    assert answer["culprit"] == want["culprit"]
    assert answer["culprit_module"] == want["module"]
    if want["frames"] is not None:
        assert answer["frames"][: len(want["frames"])] == want["frames"]
    assert answer["taint"] == want["taint"]
    assert answer["detail"] == want["detail"]
    assert (answer["oopses"], answer["truncated"], answer["interleaved"], answer["notes"]) == (1, False, False, [])
    assert answer["modules"] == ([want["module"]] if want["module"] else [])
    assert not NUMBERY.search(answer["title"]), answer["title"]
    assert 1 <= len(answer["evidence"]) <= 2


INSMOD = ["do_one_initcall", "do_init_module"]
SYSRQ_FRAMES = ["sysrq_handle_crash", "__handle_sysrq", "write_sysrq_trigger", "proc_reg_write", "vfs_write"]

NULL_DEREF = expect(
    "BUG: kernel NULL pointer dereference in cfx_flush_ring [cfx_ring]",
    "cfx_flush_ring",
    "cfx_ring",
    ["cfx_flush_ring", "cfx_ring_init", *INSMOD],
    "GOE",
    "null address",
)
REAL = {
    # tests/dumps/crash_kinds.py's kinds (oops/README.md): one module each, its bug in one function.
    "null_deref.log": NULL_DEREF,
    "bug_on.log": expect(
        "kernel BUG in cfx_check_state [cfx_bug]",
        "cfx_check_state",
        "cfx_bug",
        ["cfx_check_state", "cfx_bug_init", *INSMOD],
        "GOE",
        "cfx_bug.c:12",
    ),
    "softlockup_a.log": expect(
        "BUG: soft lockup in cfx_spin_wait [cfx_spin]",
        "cfx_spin_wait",
        "cfx_spin",
        ["cfx_spin_wait", "cfx_spin_init", *INSMOD],
        "GOE",
        "task insmod",
    ),
    "softlockup_b.log": expect(
        "BUG: soft lockup in cfx_poll_hw [cfx_poll]",
        "cfx_poll_hw",
        "cfx_poll",
        ["cfx_poll_hw", "cfx_poll_init", *INSMOD],
        "GOE",
        "task insmod",
    ),
    # The blocked task's stack: past __schedule, schedule_timeout and __wait_for_common.
    "hung_task.log": expect(
        "INFO: task hung in cfx_wait_reply [cfx_hang]",
        "cfx_wait_reply",
        "cfx_hang",
        ["cfx_wait_reply", *INSMOD],
        "GOE",
        "task insmod",
    ),
    "warn.log": expect(
        "WARNING in cfx_validate [cfx_warn]",
        "cfx_validate",
        "cfx_warn",
        ["cfx_validate", *INSMOD],
        "GOE",
        "cfx_warn.c:11",
    ),
    "gpf.log": expect(
        "general protection fault in cfx_walk_list [cfx_gpf]",
        "cfx_walk_list",
        "cfx_gpf",
        ["cfx_walk_list", "cfx_gpf_init", *INSMOD],
        "GOE",
        "poison address",  # LIST_POISON1, 0xdead000000000100
    ),
    "gpf_kaslr.log": expect(  # the same module under KASLR: addresses differ, the title must not
        "general protection fault in cfx_walk_list [cfx_gpf]",
        "cfx_walk_list",
        "cfx_gpf",
        ["cfx_walk_list", "cfx_gpf_init", *INSMOD],
        "GOE",
        "poison address",
    ),
    "divide.log": expect(
        "divide error in cfx_ratio [cfx_div]", "cfx_ratio", "cfx_div", ["cfx_ratio", "cfx_div_init", *INSMOD], "GOE"
    ),
    # The task table's biggest rss, not the frames of the allocation that failed.
    "oom.log": expect(
        "Out of memory (panic_on_oom): cf-hog",
        "cf-hog",
        None,
        ["__alloc_pages", "__folio_alloc"],
        "",
        "system-wide panic_on_oom",
    ),
    "sysrq.log": expect("sysrq-triggered crash", "sysrq_handle_crash", None, SYSRQ_FRAMES, ""),
    "initexit.log": expect(
        "Attempted to kill init", "do_exit", None, ["do_exit", "do_group_exit"], "", "exitcode=0x00000300"
    ),
    # The fixture's serial consoles (tests/dumps/fixture.py), CRLF and all, from "Linux version" on.
    "serial-sysrq.log": expect("sysrq-triggered crash", "sysrq_handle_crash", None, SYSRQ_FRAMES, ""),
    "serial-initexit.log": expect(
        "Attempted to kill init", "do_exit", None, ["do_exit", "do_group_exit"], "", "exitcode=0x00000300"
    ),
    # crash's `log -m` of the same vmcores: "[time] <level>message".
    "crash-log-sysrq.log": expect("sysrq-triggered crash", "sysrq_handle_crash", None, SYSRQ_FRAMES, ""),
    "crash-log-initexit.log": expect(
        "Attempted to kill init", "do_exit", None, ["do_exit", "do_group_exit"], "", "exitcode=0x00000300"
    ),
    # The null_deref crash as kdump (makedumpfile's dmesg ends where kexec cut in) and ramoops
    # ("Oops#1 Part1" then "<level>[time]" lines; the panic's record holds the oops too) kept it.
    "kdump-null_deref.dmesg": NULL_DEREF,
    "pstore-dmesg-ramoops-0": NULL_DEREF,
    "pstore-dmesg-ramoops-1": NULL_DEREF,
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_logs(name: str) -> None:
    check(scan(OOPS / name), REAL[name])


def test_every_real_log_has_a_case() -> None:
    logs = {path.name for path in OOPS.iterdir() if path.name != "README.md"}
    assert logs == set(REAL) | {"kdump-null_deref.serial.log"}


def test_a_capture_kernel_booting_after_the_crash() -> None:
    """kdump's console: the crash, then the capture kernel's own boot (a "Linux version" line and no
    report): the crash's boot is read, and a note says why."""
    answer = scan(OOPS / "kdump-null_deref.serial.log")
    assert answer["title"] == NULL_DEREF["title"] and answer["frames"] == scan(OOPS / "null_deref.log")["frames"]
    assert answer["notes"] == [
        "The last 1 boot(s) in the text hold no report (a capture kernel or a reboot): "
        "this report is from the boot before them."
    ]


WRITTEN = {
    "rcu_stall": expect(
        "INFO: rcu detected stall in cfx_rcu_spin [cfx_rcu]",
        "cfx_rcu_spin",
        "cfx_rcu",
        ["cfx_rcu_spin", "cfx_rcu_init"],
        "GOE",
    ),
    "hard_lockup": expect(
        "hard LOCKUP in cfx_irqoff_spin [cfx_hard]",
        "cfx_irqoff_spin",
        "cfx_hard",
        ["cfx_irqoff_spin", "cfx_hard_init"],
        "GOE",
    ),
    "double_fault": expect(
        "double fault in cfx_recurse [cfx_df]", "cfx_recurse", "cfx_df", ["cfx_recurse", "cfx_df_init", *INSMOD], "GOE"
    ),
    "stack_protector": expect(
        "stack-protector: Kernel stack is corrupted in cfx_fill_buf [cfx_sp]",
        "cfx_fill_buf",
        "cfx_sp",
        ["cfx_fill_buf", "cfx_sp_init", *INSMOD],
        "GOE",
    ),
    "kasan": expect(
        "KASAN: use-after-free Read in cfx_uaf_read [cfx_kasan]",
        "cfx_uaf_read",
        "cfx_kasan",
        ["cfx_uaf_read", "cfx_kasan_init", *INSMOD],
        "GOE",
        "Read of size 8",
    ),
    "ubsan": expect(
        "UBSAN: array-index-out-of-bounds in cfx_index_read [cfx_ubsan]",
        "cfx_index_read",
        "cfx_ubsan",
        ["cfx_index_read", "cfx_ubsan_init"],
        "GOE",
        "/build/cfx/cfx_ubsan.c:14:9",
    ),
    "scheduling_while_atomic": expect(
        "BUG: scheduling while atomic in cfx_atomic_sleep [cfx_atomic]",
        "cfx_atomic_sleep",
        "cfx_atomic",
        ["cfx_atomic_sleep", "cfx_atomic_init"],
        "GOE",
        "task insmod",
    ),
    "sleeping_in_atomic": expect(
        "BUG: sleeping function called from invalid context in cfx_locked_update [cfx_sleep]",
        "cfx_locked_update",
        "cfx_sleep",
        ["cfx_locked_update", "cfx_sleep_init"],
        "GOE",
        "kernel/locking/mutex.c:580",
    ),
    "list_corruption": expect(
        "list_del corruption in cfx_remove_node [cfx_list]",
        "cfx_remove_node",
        "cfx_list",
        ["cfx_remove_node", "cfx_list_init"],
        "GOE",
        "list_del corruption, ADDR->next is LIST_POISON1 (ADDR)",
    ),
    "page_fault": expect(
        "BUG: unable to handle page fault in cfx_scan_table [cfx_vm]",
        "cfx_scan_table",
        "cfx_vm",
        ["cfx_scan_table", "cfx_scan_worker", "process_one_work", "worker_thread", "kthread"],
        "GOE",
        "kernel address",
    ),
    "vfs_panic": expect(
        "panic: VFS: Unable to mount root fs on unknown-block(0,0)",
        "mount_block_root",
        None,
        ["mount_block_root", "prepare_namespace", "kernel_init_freeable"],
        "",
    ),
    # arm64 names its faults in its own words; the kinds are x86's, so mixed fleets group.
    "arm64_null": expect(
        "BUG: kernel NULL pointer dereference in cfx_flush_ring [cfx_ring]",
        "cfx_flush_ring",
        "cfx_ring",
        ["cfx_flush_ring", "cfx_ring_init", *INSMOD, "load_module"],
        "GOE",
        "null address",
    ),
    "arm64_bug": expect(
        "kernel BUG in cfx_check_state [cfx_bug]",
        "cfx_check_state",
        "cfx_bug",
        ["cfx_check_state", "cfx_bug_init"],
        "GOE",
        "drivers/misc/cfx/cfx_bug.c:12",
    ),
    # 4.19's wording of the same NULL dereference: the same title.
    "null_4_19": expect(
        "BUG: kernel NULL pointer dereference in cfx_flush_ring [cfx_ring]",
        "cfx_flush_ring",
        "cfx_ring",
        ["cfx_flush_ring", "cfx_ring_init", *INSMOD],
        "GOE",
        "null address",
    ),
}


@pytest.mark.parametrize("name", [name for name, _ in texts.WRITTEN])
def test_written_reports(name: str) -> None:
    check(parse(dict(texts.WRITTEN)[name]), WRITTEN[name])


@pytest.mark.parametrize(
    "case, title, culprit, module, frames",
    [
        ("sysrq", "sysrq-triggered crash", "sysrq_handle_crash", None, SYSRQ_FRAMES[:4]),
        # crash lists stale frames after do_syscall_64: the stack stops there.
        ("initexit", "Attempted to kill init", "do_group_exit", None, ["do_group_exit", "__x64_sys_exit_group"]),
        # `[exception RIP: ...]` is the fault's RIP; .cold, .part.0 and .constprop.0 go.
        (
            "bug-ext4",
            "kernel BUG in ext4_es_insert_delayed_block",
            "ext4_es_insert_delayed_block",
            None,
            ["ext4_es_insert_delayed_block", "ext4_insert_delayed_block", "ext4_da_map_blocks"],
        ),
        # The exception RIP names no module: the frame of the same function does.
        ("oops-module", "BUG: kernel NULL pointer dereference in cfx_ring_push [cfx]", "cfx_ring_push", "cfx", None),
        (
            "stackprot-kthread",
            "stack-protector: Kernel stack is corrupted in cfx_poll_thread [cfx]",
            "cfx_poll_thread",
            "cfx",
            ["cfx_poll_thread", "kthread"],
        ),
    ],
)
def test_crash_sys_and_bt(case: str, title: str, culprit: str, module: str | None, frames: list[str] | None) -> None:
    """crash's `sys` (its PANIC: line) and `bt`, as dumps_signature reads them."""
    text = (DATA / f"crash-{case}-sys.txt").read_text() + (DATA / f"crash-{case}-bt.txt").read_text()
    answer = parse(text)
    assert (answer["title"], answer["culprit"], answer["culprit_module"]) == (title, culprit, module)
    assert answer["frames"][: len(frames or [])] == (frames or [])
    assert not answer["truncated"] and answer["oopses"] == 1


# -- the same bug gets one title, different bugs two ---------------------------------------------


def rebuilt(text: str) -> str:
    """The same report from another host and kernel build: other addresses, offsets, sizes, CPU,
    PIDs, times, release and taint."""
    text = re.sub(r"\b[0-9a-f]{8,16}\b", lambda m: m.group(0)[::-1], text)
    text = re.sub(
        r"\+0x[0-9a-f]+/0x[0-9a-f]+", lambda m: "+0x%x/0x%x" % (len(m.group(0)) * 3, len(m.group(0)) * 40), text
    )
    text = re.sub(r"\[ *(\d+)\.(\d+)\]", lambda m: "[%5d.%s]" % (int(m.group(1)) + 86400, m.group(2)), text)
    text = re.sub(r"CPU#\d+", "CPU#7", text).replace("CPU: 0 ", "CPU: 7 ").replace("CPU: 1 ", "CPU: 7 ")
    text = re.sub(r"PID: \d+|insmod:\d+", lambda m: m.group(0).split(":")[0] + ": 31337", text)
    text = text.replace(texts.RELEASE, "6.1.0-28-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1")
    return text.replace("G           OE", "G        W  OE")


def real(name: str) -> str:
    return (OOPS / name).read_text()


def test_the_same_lockup_on_two_builds_has_one_title() -> None:
    text = real("softlockup_a.log")
    other = rebuilt(text)
    assert other != text and "6.1.0-28-amd64" in other and "+0x1a/0xfc0" not in other and "CPU#7" in other
    first, second = parse(text), parse(other)
    assert first["title"] == second["title"] == "BUG: soft lockup in cfx_spin_wait [cfx_spin]"
    assert first["frames"] == second["frames"] and first["taint"] == "GOE" and second["taint"] == "GWOE"
    assert first["evidence"] != second["evidence"]  # the lines themselves keep their addresses


def test_two_lockups_in_two_modules_have_two_titles() -> None:
    """The watchdog's frames are the same in both: the interrupted code tells them apart."""
    spin, poll = parse(real("softlockup_a.log")), parse(real("softlockup_b.log"))
    assert spin["title"] != poll["title"]
    assert "watchdog_timer_fn" in real("softlockup_b.log") and "watchdog_timer_fn" not in poll["frames"]


def test_the_same_null_dereference_on_x86_6_1_4_19_and_arm64_has_one_title() -> None:
    titles = {parse(text)["title"] for text in (texts.NULL_4_19, texts.ARM64_NULL, rebuilt(texts.NULL_4_19))}
    assert titles == {"BUG: kernel NULL pointer dereference in cfx_flush_ring [cfx_ring]"}


# -- cut off, interleaved, several reports ------------------------------------------------------


def cut(text: str, marker: str, keep: int = 0) -> str:
    """The text up to the line holding `marker` (and `keep` characters of that line)."""
    at = text.index(marker)
    start = text.rindex("\n", 0, at) + 1
    return text[: start + keep] if keep else text[:start]


@pytest.mark.parametrize(
    "marker, keep, culprit",
    [
        ("Oops: 0000 [#1]", 0, None),  # only the header survived: the kind alone, with a note
        ("Code: 00 00 c3", 0, "cfx_scan_table"),  # the RIP survived
        (" process_one_work+", 20, "cfx_scan_table"),  # cut inside a frame line
    ],
)
def test_a_report_cut_off(marker: str, keep: int, culprit: str | None) -> None:
    answer = parse(cut(texts.PAGE_FAULT, marker, keep))
    kind = "BUG: unable to handle page fault"
    assert answer["title"] == (kind + " in cfx_scan_table [cfx_vm]" if culprit else kind)
    assert answer["culprit"] == culprit and answer["truncated"]
    assert any("cut off" in note for note in answer["notes"])
    if culprit is None:
        assert "before its culprit was printed" in " ".join(answer["notes"])


def test_a_real_oops_cut_off() -> None:
    text = real("null_deref.log")
    before_rip = parse(cut(text, "RIP: 0010:"))
    assert before_rip["title"] == "BUG: kernel NULL pointer dereference" and before_rip["truncated"]
    assert before_rip["detail"] == "null address" and before_rip["taint"] == "GOE"
    in_trace = parse(cut(text, " do_init_module+", 9))
    assert in_trace["title"] == NULL_DEREF["title"] and in_trace["truncated"]
    assert in_trace["frames"] == ["cfx_flush_ring", "cfx_ring_init", "do_one_initcall"]


def test_a_panic_cut_off_in_its_stack_is_still_named() -> None:
    text = (OOPS / "serial-sysrq.log").read_text()
    answer = parse(cut(text, "sysrq_handle_crash+"))  # the stack stops at panic and _printk
    assert answer["title"] == "sysrq-triggered crash" and answer["truncated"]
    assert answer["culprit"] is None


def test_a_hung_task_cut_off_in_the_scheduler_names_no_culprit() -> None:
    text = texts.dmesg(
        [
            "INFO: task cfx-hang:93 blocked for more than 120 seconds.",
            "      " + texts.tainted("OE") + " " + texts.RELEASE,
            '"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.',
            "task:cfx-hang        state:D stack:0     pid:93    ppid:2      flags:0x00004000",
            "Call Trace:",
            " <TASK>",
            " __schedule+0x34d/0x9e0",
            " schedule+0x5a/0xd0",
        ],
        247.178035,
    )
    answer = parse(text)
    assert (answer["title"], answer["culprit"], answer["truncated"]) == ("INFO: task hung", None, True)
    assert answer["taint"] == "GOE" and answer["detail"] == "task cfx-hang"


def test_two_cpus_interleaved_with_caller_ids() -> None:
    """printk's caller ids ("[    C0]") tell the CPUs' lines apart: the first report is whole."""
    answer = parse(texts.lockups_at_once(with_ids=True))
    assert answer["title"] == "BUG: soft lockup in cfx_spin_wait [cfx_spin]"
    assert answer["frames"][:2] == ["cfx_spin_wait", "cfx_spin_init"] and "cfx_poll_init" not in answer["frames"]
    assert answer["interleaved"] and answer["oopses"] == 2 and not answer["truncated"]
    assert any("caller id set them aside" in note for note in answer["notes"])


def test_two_cpus_interleaved_without_caller_ids() -> None:
    answer = parse(texts.lockups_at_once(with_ids=False))
    assert answer["title"] == "BUG: soft lockup in cfx_spin_wait [cfx_spin]"  # the first RIP after the header
    assert answer["interleaved"] and answer["oopses"] == 2
    assert any("may come from the other report" in note for note in answer["notes"])


def test_several_reports_the_first_is_the_cause() -> None:
    answer = parse(texts.UBSAN + texts.PAGE_FAULT)
    assert answer["title"] == "UBSAN: array-index-out-of-bounds in cfx_index_read [cfx_ubsan]"
    assert answer["oopses"] == 2 and not answer["interleaved"] and not answer["truncated"]
    assert answer["notes"] == [
        "The log holds 2 reports; the first (UBSAN: array-index-out-of-bounds) is taken as the cause, "
        "later: BUG: unable to handle page fault."
    ]


def test_a_warning_then_an_oops() -> None:
    warning = cut(real("warn.log"), "Kernel panic - not syncing")  # no panic_on_warn: the host ran on
    answer = parse(warning + real("null_deref.log"))
    assert answer["title"] == "WARNING in cfx_validate [cfx_warn]" and answer["oopses"] == 2
    assert "later: BUG: kernel NULL pointer dereference." in answer["notes"][0]


def test_a_second_oops_is_counted_and_its_panic_is_not() -> None:
    first = cut(texts.PAGE_FAULT, "Kernel panic - not syncing")  # the oops killed its task, no panic
    second = texts.NULL_4_19.replace("Oops: 0000 [#1]", "Oops: 0000 [#2]")
    answer = parse(first + second)
    assert answer["title"] == "BUG: unable to handle page fault in cfx_scan_table [cfx_vm]"
    assert answer["oopses"] == 2
    assert "later: BUG: kernel NULL pointer dereference." in answer["notes"][0]


def test_only_the_panic_survived() -> None:
    answer = parse(cut(texts.PAGE_FAULT, "Kernel panic - not syncing").split("---[ end trace")[0][:0] + PANIC_ONLY)
    assert answer["title"] == "panic: Fatal exception" and answer["culprit"] is None
    assert "Only the panic survived: the report before it is missing from the text." in answer["notes"]


PANIC_ONLY = texts.dmesg(["Kernel panic - not syncing: Fatal exception", *texts.panic_end("Fatal exception")], 5.0)


def test_out_of_memory_with_nothing_to_kill() -> None:
    """mm/oom_kill.c out_of_memory(): no killable task, "System is deadlocked on memory"."""
    text = real("oom.log").replace(
        "Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled",
        "Out of memory and no killable processes...\n"
        "[   13.176708] Kernel panic - not syncing: System is deadlocked on memory",
    )
    answer = parse(text)
    assert answer["title"] == "Out of memory (System is deadlocked on memory): cf-hog"
    assert answer["evidence"][1].endswith(" cf-hog") and "65" not in answer["title"]


def test_out_of_memory_without_a_task_table() -> None:
    """vm.oom_dump_tasks=0: the task that invoked the OOM killer is named instead."""
    lines = real("oom.log").replace("cf-hog invoked oom-killer", "kworker/u8:2 invoked oom-killer").splitlines()
    text = "\n".join(line for line in lines if not re.search(r"\] \[ *(pid|\d+) *\]|Tasks state", line))
    assert parse(text)["title"] == "Out of memory (panic_on_oom): kworker"


# -- bytes, prefixes, big logs, nothing ---------------------------------------------------------


def test_bytes_that_are_not_utf8() -> None:
    raw = (OOPS / "serial-sysrq.log").read_bytes()
    garbage = b"\xff\xfe\x00\xc3(\x1b[0m\xa0"
    noisy = garbage + raw.replace(b"Run /init", b"Run \xff/init").replace(b" vfs_write+", b"\xc3\xa9 vfs_write+")
    noisy = noisy.replace(b"Hardware name:", garbage + b"\nHardware name:")
    answer = parse(noisy)
    assert answer["title"] == "sysrq-triggered crash" and answer["frames"] == scan(OOPS / "serial-sysrq.log")["frames"]
    assert parse(raw) == scan(OOPS / "serial-sysrq.log")


def prefixed(text: str, form: str) -> str:
    """The text as another tool logs it: a journal, syslog, /dev/kmsg, dmesg -T, a console."""
    out = []
    for n, line in enumerate(text.splitlines()):
        message = re.sub(r"^\[ *\d+\.\d+\] ", "", line)
        if form == "journal":
            out.append("Dec 07 12:00:%02d web01 kernel: %s" % (n % 60, message))
        elif form == "iso-syslog":
            out.append("2026-12-07T12:00:00.%06d+00:00 web01 kernel: [ 412.%06d] %s" % (n, n, message))
        elif form == "kmsg":
            out.append("4,%d,%d,-,caller=T97;%s" % (n, 412000000 + n, message))
        elif form == "dmesg-T":
            out.append("[Mon Dec  7 12:00:00 2026] %s" % message)
        elif form == "levels":
            out.append("<4>[  412.%06d] %s" % (n, message))
        elif form == "console":
            out.append("\x1b[0m%s\r\r" % line)
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("form", ["journal", "iso-syslog", "kmsg", "dmesg-T", "levels", "console"])
def test_line_prefixes(form: str) -> None:
    plain = parse(texts.PAGE_FAULT)
    answer = parse(prefixed(texts.PAGE_FAULT, form))
    for key in ("title", "culprit", "culprit_module", "frames", "taint", "detail", "oopses", "truncated", "notes"):
        assert answer[key] == plain[key], key


def test_other_programs_lines_in_a_journal_are_not_reports() -> None:
    journal = "Dec 07 11:59:58 web01 backup[4121]: BUG: kernel NULL pointer dereference, address: 0000000000000000\n"
    journal += "Dec 07 11:59:59 web01 systemd[1]: WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2\n"
    answer = parse(journal + prefixed(texts.PAGE_FAULT, "journal"))
    assert answer["title"] == "BUG: unable to handle page fault in cfx_scan_table [cfx_vm]"
    assert answer["oopses"] == 1


def test_crash_log_format_has_levels_after_the_time() -> None:
    assert "<0>Kernel panic" in (OOPS / "crash-log-sysrq.log").read_text()  # crash's `log -m`


def test_no_report() -> None:
    boot = cut((OOPS / "serial-sysrq.log").read_text(), "crashfleet fixture: panic")
    for text in (boot, "", b"", "BUG\nWARNING\n"):
        answer = parse(text)
        assert answer["title"] is None and answer["kind"] is None and answer["oopses"] == 0
        assert len(answer["notes"]) == 1 and answer["notes"][0].startswith("No kernel crash report found: looked for")


FILLER = (
    b"[%12.6f] EXT4-fs (vda1): mounted filesystem with ordered data mode. Quota mode: none.\n"
    b'[%12.6f] audit: type=1400 audit(1700000000.123:45): apparmor="STATUS" operation="profile_load"\n'
    b"[%12.6f] INFO: NMI handler (perf_event_nmi_handler) took too long to run: 1.234 msecs\n"
    b"[%12.6f] systemd[1]: Started Session 12 of User root.\n" % (1.0, 2.0, 3.0, 4.0)
)


def test_a_100_mb_log() -> None:
    """scan finds the first report of the last boot in 100 MB (the time is measured in bench/)."""
    crash_boot = (OOPS / "serial-sysrq.log").read_bytes()
    filler = FILLER * ((100 << 20) // len(FILLER))
    head, tail = crash_boot.split(b"crashfleet fixture")
    answer = scan(head + filler + b"[    7.552982] crashfleet fixture" + tail)
    assert answer["title"] == "sysrq-triggered crash" and answer["notes"] == []
    # A capture kernel (or a reboot) boots after the crash: the crash's boot is read.
    kdump = b"[    0.000000] Linux version 6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP\n" + filler
    answer = scan(crash_boot + kdump)
    assert answer["title"] == "sysrq-triggered crash"
    assert answer["notes"][0].startswith("The last 1 boot(s) in the text hold no report")


def test_the_last_boot_with_a_report_wins() -> None:
    first = (OOPS / "serial-initexit.log").read_bytes()
    second = (OOPS / "serial-sysrq.log").read_bytes()
    assert scan(first + second)["title"] == "sysrq-triggered crash"
    assert scan(second + first)["title"] == "Attempted to kill init"
    mention = b"[   31.000000] cfx-agent: Linux version 6.1.0-57-cloud-amd64 (debian) is supported\n"
    assert scan(second + mention)["notes"] == []  # only the kernel's banner starts a boot


def test_scan_reads_a_file_and_its_tail(tmp_path: Path) -> None:
    log = tmp_path / "dmesg.202612071200"
    log.write_bytes(FILLER * 20000 + (OOPS / "serial-sysrq.log").read_bytes())
    assert scan(log)["title"] == "sysrq-triggered crash"
    size = log.stat().st_size >> 20
    assert scan(str(log), max_bytes=1 << 20)["notes"] == ["Only the last 1 MiB of %d MiB were read." % size]
    assert scan(str(log), max_bytes=1 << 20)["title"] == "sysrq-triggered crash"
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert scan(empty)["title"] is None


def test_newer_kernels_put_oops_before_the_die_line() -> None:
    older = texts.DOUBLE_FAULT.split("\n", 1)[1]  # the die line alone, without "traps: PANIC: double fault"
    newer = older.replace("double fault: 0000 [#1]", "Oops: double fault: 0000 [#1]")  # 6.9's __die_header()
    assert parse(newer)["title"] == parse(older)["title"] == "double fault in cfx_recurse [cfx_df]"


# -- culprit rules -----------------------------------------------------------------------------


def test_a_lockup_spinning_on_a_lock_is_named_after_the_lock_taker() -> None:
    """The CPU spins in the qspinlock slow path: the culprit is who took the lock."""
    text = real("softlockup_a.log")
    rip = "RIP: 0010:cfx_spin_wait+0x1a/0xfc0 [cfx_spin]"
    text = text.replace(rip, "RIP: 0010:native_queued_spin_lock_slowpath+0x63/0x1e0")
    text = text.replace(
        " cfx_spin_init+",
        " _raw_spin_lock+0x25/0x30\n"
        "[   17.309750]  cfx_spin_wait+0x1a/0xfc0 [cfx_spin]\n"
        "[   17.309751]  cfx_spin_init+",
    )
    answer = parse(text)
    assert answer["title"] == "BUG: soft lockup in cfx_spin_wait [cfx_spin]"
    assert answer["frames"][:2] == ["cfx_spin_wait", "cfx_spin_init"]


def test_a_task_hung_on_a_mutex_is_named_after_the_waiter() -> None:
    """kernel/hung_task.c check_hung_task() and sched_show_task(): the scheduler, the mutex slow
    path and their wrappers are how it waited; the first other frame is who waited."""
    text = texts.dmesg(
        [
            "INFO: task cfx-hang:93 blocked for more than 120 seconds.",  # check_hung_task()
            "      " + texts.tainted("OE") + " " + texts.RELEASE,  # "      %s %s %.*s"
            '"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.',
            "task:cfx-hang        state:D stack:0     pid:93    ppid:2      flags:0x00004000",  # sched_show_task()
            "Call Trace:",
            " <TASK>",
            " __schedule+0x34d/0x9e0",
            " schedule+0x5a/0xd0",
            " schedule_preempt_disabled+0x11/0x20",
            " __mutex_lock.constprop.0+0x399/0x700",
            " cfx_wait_reply+0x1a/0x30 [cfx_hang]",
            " cfx_hang_thread+0x2e/0x40 [cfx_hang]",
            " ? cfx_wait_reply+0x30/0x30 [cfx_hang]",
            " kthread+0xd7/0x100",
            " ? kthread_complete_and_exit+0x20/0x20",
            " ret_from_fork+0x22/0x30",
            " </TASK>",
        ],
        247.178035,
    )
    check(
        parse(text),
        expect(
            "INFO: task hung in cfx_wait_reply [cfx_hang]",
            "cfx_wait_reply",
            "cfx_hang",
            ["cfx_wait_reply", "cfx_hang_thread", "kthread"],
            "GOE",
            "task cfx-hang",
        ),
    )


@pytest.mark.parametrize(
    "message, title",
    [
        (
            "corrupted stack end detected inside scheduler",  # kernel/sched/core.c schedule_debug()
            "panic: corrupted stack end detected inside scheduler",
        ),
        (
            # mm/memblock.c memblock_alloc_or_panic(): "%s: Failed to allocate %lu bytes align=0x%lx"
            "alloc_large_system_hash: Failed to allocate 4096 bytes align=0x1000",
            "panic: alloc_large_system_hash: Failed to allocate 4096 bytes align=ADDR",
        ),
        (
            "VFS: Unable to mount root fs on unknown-block(0,0)",
            "panic: VFS: Unable to mount root fs on unknown-block(0,0)",
        ),
        ("Fatal exception in interrupt", "panic: Fatal exception in interrupt"),
    ],
)
def test_other_panics_are_named_by_their_message(message: str, title: str) -> None:
    text = texts.dmesg(["Kernel panic - not syncing: " + message, *texts.panic_end(message)], 2.5)
    answer = parse(text)
    assert answer["title"] == title and answer["kind"] == title and not NUMBERY.search(title.replace("4096", ""))


def test_compiler_suffixes_are_stripped() -> None:
    text = texts.PAGE_FAULT.replace("cfx_scan_table+", "cfx_scan_table.constprop.0.cold+").replace(
        " cfx_scan_worker+", " cfx_scan_worker.llvm.8817342114+"
    )
    answer = parse(text.replace(" process_one_work+", " process_one_work.isra.0+"))
    assert answer["frames"][:3] == ["cfx_scan_table", "cfx_scan_worker", "process_one_work"]


@pytest.mark.parametrize("name", [name for name in sorted(REAL) if "-" not in name])  # crash_kinds.py's
def test_every_cut_of_a_real_log_is_right_or_says_so(name: str) -> None:
    """Cut after each line of the report (and inside its lines): the same title, none yet, or a
    title with a note (cut off, garbled)."""
    data = (OOPS / name).read_bytes()
    start = data.index(scan(OOPS / name)["evidence"][0].encode()[:40])
    lines = [i + 1 for i in range(start, len(data)) if data[i] == 10]
    for cut_at in lines + [at - 7 for at in lines]:
        answer = parse(data[:cut_at])
        assert answer["title"] in (REAL[name]["title"], None) or answer["notes"], (cut_at, answer)


def from_panic(name: str) -> str:
    text = real(name)
    return text[text.rindex("\n", 0, text.index("Kernel panic - not syncing")) + 1 :]


@pytest.mark.parametrize(
    "text, title, note",
    [
        # The report scrolled away (or a ring buffer lost it): only its panic is left.
        (
            from_panic("softlockup_a.log"),
            "BUG: soft lockup in cfx_spin_wait [cfx_spin]",
            "Only the panic survived of this report",
        ),
        (from_panic("hung_task.log"), "INFO: task hung", "Only the panic survived of this report"),  # khungtaskd's
        (from_panic("warn.log"), "WARNING in cfx_validate [cfx_warn]", "Only the panic survived of this report"),
        # The line naming the fault is gone: the Oops line's kind, and a note.
        (
            real("null_deref.log").replace("BUG: kernel NULL pointer dereference, address: 000000000000000c", "mm"),
            "Oops in cfx_flush_ring [cfx_ring]",
            "The line naming the fault, printed before the Oops line, is missing",
        ),
        # Noise ate the RIP's offset and module.
        (
            real("null_deref.log").replace(
                "RIP: 0010:cfx_flush_ring+0x5/0xfc0 [cfx_ring]", "RIP: 0010:cfx_flush_ring+0 9"
            ),
            "BUG: kernel NULL pointer dereference in cfx_flush_ring",
            "The culprit's line is garbled",
        ),
        # A call through a NULL function pointer: the RIP is 0, its caller is the culprit.
        (
            real("null_deref.log").replace("RIP: 0010:cfx_flush_ring+0x5/0xfc0 [cfx_ring]", "RIP: 0010:0x0"),
            "BUG: kernel NULL pointer dereference in cfx_ring_init [cfx_ring]",
            "The RIP is in no known function",
        ),
        # No RIP at all (a log that lost those lines): the stack's innermost frame.
        (
            re.sub(r".*RIP: 0010:.*\n", "", real("null_deref.log")),
            "BUG: kernel NULL pointer dereference in cfx_ring_init [cfx_ring]",
            "No RIP or pc line survived",
        ),
    ],
)
def test_what_a_damaged_log_still_says(text: str, title: str, note: str) -> None:
    answer = parse(text)
    assert answer["title"] == title
    assert any(line.startswith(note) for line in answer["notes"]), answer["notes"]
