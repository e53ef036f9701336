"""Kernel crash reports written by hand, for the kinds that cannot be made in this QEMU rig
(KASAN, UBSAN, RCU stalls, hard lockups, double faults, arm64, ...): each line is printed the way
Linux v6.1 prints it, and its comment names the file and function whose format string makes it.
The format strings were checked against the strings of Debian's 6.1.0-57-cloud-amd64 vmlinux
(6.1.192) where that kernel has them. Values (addresses, registers, times) are made up but shaped
like the real ones in tests/unit/data/oops/.

Shared blocks (a CPU line, registers) come from the helpers below, with the same comments.
"""

from __future__ import annotations

from collections.abc import Sequence

RELEASE = "6.1.0-57-cloud-amd64 #1  Debian 6.1.192-3"
ARM_RELEASE = "6.1.0-57-arm64 #1  Debian 6.1.192-3"
# lib/dump_stack.c dump_stack_print_info(): "Hardware name: %s"
HW = "Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014"
ARM_HW = "Hardware name: linux,dummy-virt (DT)"
TAINT_ORDER = "PFSRMBUDAWCIOELKXTN"  # kernel/panic.c taint_flags[], one column each


def dmesg(lines: Sequence[str], start: float) -> str:
    """The lines with dmesg's "[%5lu.%06lu] " time (kernel/printk/printk.c print_time()), 0.4 ms apart."""
    return "".join("[%12.6f] %s\n" % (start + n * 0.000431, line) for n, line in enumerate(lines))


def tainted(flags: str) -> str:
    """kernel/panic.c print_tainted(): "Tainted: " and a column per flag, G when not proprietary."""
    if not flags:
        return "Not tainted"
    columns = ["G"] + [flag if flag in flags else " " for flag in TAINT_ORDER[1:]]
    return "Tainted: " + "".join(columns)


def cpu(n: int, pid: int, comm: str, flags: str, release: str = RELEASE) -> str:
    """lib/dump_stack.c dump_stack_print_info(): "CPU: %d PID: %d Comm: %.20s %s%s %s %.*s"."""
    return "CPU: %d PID: %d Comm: %s %s %s" % (n, pid, comm, tainted(flags), release)


def x86_regs(rip: str, user: bool = False) -> list[str]:
    """arch/x86/kernel/dumpstack.c show_iret_regs() (show_ip(), show_opcodes()) and
    arch/x86/kernel/process_64.c __show_regs(): a kernel context's registers."""
    if user:
        return [
            "RIP: 0033:0x47fbe9",  # show_ip(): "%sRIP: %04x:%pS" (a user address prints as a number)
            "Code: 08 89 e8 5b 5d c3 66 2e 0f 1f 84 00 00 00 00 00 90 48 89 f8 48 89 f7 48 89 d6 48 89 ca 4d 89 "
            "c2 4d 89 c8 4c 8b 4c 24 08 0f 05 <48> 3d 01 f0 ff ff 73 01 c3 48 c7 c1 e0 ff ff ff f7 d8 64 89 01 48",
            "RSP: 002b:00007ffc2e9d3b28 EFLAGS: 00000246 ORIG_RAX: 0000000000000139",  # show_iret_regs()
            "RAX: ffffffffffffffda RBX: 0000000001f5a990 RCX: 000000000047fbe9",  # __show_regs()
            "RDX: 0000000000000000 RSI: 0000000001f5a990 RDI: 0000000000000003",
            "RBP: 0000000000000003 R08: 0000000001f5a990 R09: 0000000000000000",
            "R10: 0000000000000000 R11: 0000000000000246 R12: 0000000001f59ac8",
            "R13: 0000000001f59af0 R14: 0000000000000000 R15: 0000000000000000",
        ]
    return [
        "RIP: 0010:" + rip,  # show_ip(): "%sRIP: %04x:%pS"
        "Code: 00 00 c3 cc cc cc cc 66 0f 1f 84 00 00 00 00 00 0f 1f 44 00 00 65 ff 05 f4 8a e1 3f 8b 05 2e 10 "
        # show_opcodes()
        "00 00 85 c0 75 33 31 <f3> 90 8b 05 22 10 00 00 85 c0 74 f4 c3 cc cc cc cc 00 00 00 00 00 00 00",
        "RSP: 0018:ffffc900005b3d60 EFLAGS: 00000246",  # show_iret_regs(): "%sRSP: %04x:%016lx EFLAGS: %08lx"
        "RAX: 0000000000b99bbc RBX: ffffffffc020c000 RCX: 0000000000000000",  # __show_regs()
        "RDX: 0000000000000000 RSI: ffffffffc020c000 RDI: ffffc900005b3d50",
        "RBP: ffff888004be3310 R08: 0000000000000010 R09: ffff888004be3310",
        "R10: ffff8880050c14b0 R11: 0000000000000100 R12: ffffc900005b3d70",
        "R13: 0000000000000000 R14: 0000000000000000 R15: 0000000000000000",
        "FS:  00000000120583c0(0000) GS:ffff88800f600000(0000) knlGS:0000000000000000",
        "CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033",
        "CR2: 0000000000500ebe CR3: 00000000056cc000 CR4: 00000000000006b0",
    ]


def insmod_tail(init: str) -> list[str]:
    """A module's init function called by insmod (finit_module(2)), then the syscall's user
    registers: arch/x86/kernel/dumpstack.c show_trace_log_lvl() (" %s%pB" per frame, "<TASK>")."""
    return [
        " %s" % init,
        " do_one_initcall+0x59/0x220",
        " do_init_module+0x4a/0x1f0",
        " __do_sys_finit_module+0xac/0x120",
        " do_syscall_64+0x5d/0x90",
        " ? do_user_addr_fault+0x1b0/0x560",
        " ? exit_to_user_mode_prepare+0x44/0x240",
        " entry_SYSCALL_64_after_hwframe+0x6e/0xd8",
        *x86_regs("", user=True),
        " </TASK>",
    ]


def panic_end(message: str) -> list[str]:
    """kernel/panic.c panic(): after the stack, the offset and the end marker."""
    return [
        "Kernel Offset: disabled",  # arch/x86/kernel/setup.c dump_kernel_offset()
        "---[ end Kernel panic - not syncing: %s ]---"
        % message,  # panic(): "---[ end Kernel panic - not syncing: %s ]---"
    ]


# kernel/rcu/tree_stall.h print_other_cpu_stall(): CPU 1 sees CPU 0 spin with preemption off in a
# module; rcu_dump_cpu_stacks() has CPU 0 show its regs by NMI (lib/nmi_backtrace.c); then
# panic_on_rcu_stall (check_panic_on_rcu_stall(): panic("RCU Stall\n")).
RCU_STALL = dmesg(
    [
        "cfx_rcu: loading out-of-tree module taints kernel.",  # kernel/module/main.c
        # print_other_cpu_stall(): "INFO: %s detected stalls on CPUs/tasks:"
        "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
        # print_cpu_stall_info()
        "rcu: \t0-...!: (5249 ticks this GP) idle=2a4c/1/0x4000000000000000 softirq=1227/1227 fqs=2529",
        # print_other_cpu_stall(): pr_cont("\t(detected by %d, t=%ld jiffies, ...
        "\t(detected by 1, t=5252 jiffies, g=1449, q=121 ncpus=2)",
        "Sending NMI from CPU 1 to CPUs 0:",  # lib/nmi_backtrace.c nmi_trigger_cpumask_backtrace()
        "NMI backtrace for cpu 0",  # lib/nmi_backtrace.c nmi_cpu_backtrace(): "NMI backtrace for cpu %d"
        cpu(0, 89, "insmod", "OE"),  # show_regs() -> show_regs_print_info()
        HW,
        *x86_regs("cfx_rcu_spin+0x1a/0xfc0 [cfx_rcu]"),
        "Call Trace:",  # arch/x86/kernel/dumpstack.c show_trace_log_lvl()
        " <TASK>",
        *insmod_tail("cfx_rcu_init+0xa/0x1000 [cfx_rcu]"),
        "Kernel panic - not syncing: RCU Stall",  # kernel/rcu/tree_stall.h check_panic_on_rcu_stall()
        cpu(1, 0, "swapper/1", "OEL"),  # kernel/panic.c panic() -> dump_stack()
        HW,
        "Call Trace:",
        " <IRQ>",
        " dump_stack_lvl+0x44/0x5c",
        " panic+0x118/0x2f4",
        " rcu_sched_clock_irq.cold+0x2d1/0x43b",
        " update_process_times+0x8c/0xc0",
        " tick_sched_handle+0x22/0x60",
        " tick_sched_timer+0x7a/0x90",
        " ? tick_sched_do_timer+0xa0/0xa0",
        " __hrtimer_run_queues+0x10d/0x250",
        " hrtimer_interrupt+0xf4/0x210",
        " __sysvec_apic_timer_interrupt+0x5d/0x110",
        " sysvec_apic_timer_interrupt+0x69/0x90",
        " </IRQ>",
        " <TASK>",
        " asm_sysvec_apic_timer_interrupt+0x16/0x20",
        *x86_regs("default_idle+0x10/0x20"),
        " default_idle_call+0x2c/0xe0",
        " do_idle+0x220/0x2b0",
        " cpu_startup_entry+0x19/0x20",
        " start_secondary+0x12b/0x150",
        " secondary_startup_64_no_verify+0xe5/0xeb",
        " </TASK>",
        *panic_end("RCU Stall"),
    ],
    31.108254,
)

# kernel/watchdog_hld.c watchdog_overflow_callback(): a CPU spinning with interrupts off; the NMI
# shows its regs (show_regs(regs)), then hardlockup_panic: nmi_panic(regs, "Hard LOCKUP").
HARD_LOCKUP = dmesg(
    [
        # pr_emerg("Watchdog detected hard LOCKUP on cpu %d\n") (pr_fmt "NMI watchdog: ")
        "NMI watchdog: Watchdog detected hard LOCKUP on cpu 1",
        "Modules linked in: cfx_hard(OE+) qemu_fw_cfg",  # kernel/module/main.c print_modules()
        cpu(1, 93, "insmod", "OE"),  # show_regs() -> show_regs_print_info()
        HW,
        *x86_regs("cfx_irqoff_spin+0x1f/0xfc0 [cfx_hard]"),
        "Call Trace:",  # arch/x86/kernel/dumpstack.c show_trace_log_lvl()
        " <TASK>",
        *insmod_tail("cfx_hard_init+0xa/0x1000 [cfx_hard]"),
        "Kernel panic - not syncing: Hard LOCKUP",  # kernel/watchdog_hld.c: nmi_panic(regs, "Hard LOCKUP")
        cpu(1, 93, "insmod", "OE"),  # kernel/panic.c panic() -> dump_stack()
        HW,
        "Call Trace:",
        " <NMI>",  # show_trace_log_lvl(): the stack type's name
        " dump_stack_lvl+0x44/0x5c",
        " panic+0x118/0x2f4",
        " nmi_panic.cold+0xc/0xc",
        " watchdog_overflow_callback.cold+0x5c/0x70",
        " __perf_event_overflow+0x5a/0x100",
        " handle_pmi_common+0x1e8/0x390",
        " intel_pmu_handle_irq+0x11c/0x2a0",
        " perf_event_nmi_handler+0x28/0x50",
        " nmi_handle+0x5e/0x130",
        " default_do_nmi+0x46/0x110",
        " exc_nmi+0x13c/0x170",
        " end_repeat_nmi+0x16/0x67",
        *x86_regs("cfx_irqoff_spin+0x1f/0xfc0 [cfx_hard]"),
        " ? cfx_irqoff_spin+0x1f/0xfc0 [cfx_hard]",
        " ? cfx_irqoff_spin+0x1f/0xfc0 [cfx_hard]",
        " </NMI>",
        " <TASK>",
        *insmod_tail("cfx_hard_init+0xa/0x1000 [cfx_hard]")[:-1],
        " </TASK>",
        *panic_end("Hard LOCKUP"),
    ],
    22.560113,
)

# arch/x86/kernel/traps.c exc_double_fault(): pr_emerg("PANIC: double fault, error_code: 0x%lx\n")
# (pr_fmt "traps: "), die("double fault", regs, error_code), panic("Machine halted.").
DOUBLE_FAULT = dmesg(
    [
        "traps: PANIC: double fault, error_code: 0x0",  # exc_double_fault()
        # arch/x86/kernel/dumpstack.c __die_header(): "%s: %04lx [#%d]%s%s%s%s%s"
        "double fault: 0000 [#1] PREEMPT SMP NOPTI",
        cpu(0, 90, "insmod", "OE"),  # __die_body() -> show_regs()
        HW,
        *x86_regs("cfx_recurse+0x9/0x30 [cfx_df]"),
        "Call Trace:",  # show_trace_log_lvl(); the #DF stack, then the task's
        " <#DF>",
        " </#DF>",
        " <TASK>",
        " cfx_recurse+0x1e/0x30 [cfx_df]",
        " cfx_recurse+0x1e/0x30 [cfx_df]",
        " cfx_recurse+0x1e/0x30 [cfx_df]",
        *insmod_tail("cfx_df_init+0xa/0x1000 [cfx_df]"),
        "Modules linked in: cfx_df(OE+) qemu_fw_cfg",  # __die_body() -> print_modules()
        "---[ end trace 0000000000000000 ]---",  # kernel/panic.c print_oops_end_marker()
        *x86_regs("cfx_recurse+0x9/0x30 [cfx_df]"),  # arch/x86/kernel/dumpstack.c oops_end(): the executive summary
        "Kernel panic - not syncing: Machine halted.",  # exc_double_fault(): panic("Machine halted.")
        *panic_end("Machine halted."),
    ],
    8.731520,
)

# kernel/panic.c __stack_chk_fail(): panic("stack-protector: Kernel stack is corrupted in: %pB",
# __builtin_return_address(0)), here from a module's function that overran its buffer.
STACK_PROTECTOR = dmesg(
    [
        "cfx_sp: loading out-of-tree module taints kernel.",
        "Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: cfx_fill_buf+0x6a/0x70 [cfx_sp]",
        cpu(0, 89, "insmod", "OE"),  # panic() -> dump_stack()
        HW,
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x44/0x5c",
        " panic+0x118/0x2f4",
        " ? cfx_fill_buf+0x6a/0x70 [cfx_sp]",
        " __stack_chk_fail+0x10/0x10",
        " cfx_fill_buf+0x6a/0x70 [cfx_sp]",
        *insmod_tail("cfx_sp_init+0xa/0x1000 [cfx_sp]"),
        *panic_end("stack-protector: Kernel stack is corrupted in: cfx_fill_buf+0x6a/0x70 [cfx_sp]"),
    ],
    9.002177,
)

# mm/kasan/report.c: start_report(), print_error_description(), print_address_description()
# (dump_stack_lvl(), describe_object(), dump_page()), print_memory_metadata(), end_report() ->
# check_panic_on_warn("KASAN") with panic_on_warn=1.
KASAN = dmesg(
    [
        "==================================================================",  # start_report()
        # print_error_description(): "BUG: KASAN: %s in %pS"
        "BUG: KASAN: use-after-free in cfx_uaf_read+0x2c/0x40 [cfx_kasan]",
        "Read of size 8 at addr ffff888005f2a208 by task insmod/94",  # "%s of size %zu at addr %px by task %s/%d"
        "",  # print_report(): pr_err("\n")
        cpu(1, 94, "insmod", "OE"),  # print_address_description() -> dump_stack_lvl(KERN_ERR)
        HW,
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x49/0x63",
        " print_report.cold+0x5e/0x5f3",
        " ? cfx_uaf_read+0x2c/0x40 [cfx_kasan]",
        " kasan_report+0xa7/0x120",
        " ? cfx_uaf_read+0x2c/0x40 [cfx_kasan]",
        " cfx_uaf_read+0x2c/0x40 [cfx_kasan]",
        *insmod_tail("cfx_kasan_init+0x1b/0x1000 [cfx_kasan]"),
        "",
        "Allocated by task 94:",  # mm/kasan/report.c describe_object_stacks(): "Allocated by task %d:"
        " kasan_save_stack+0x1e/0x40",  # print_track() -> stack_depot_print()
        " __kasan_kmalloc+0x81/0xa0",
        " cfx_make_node+0x1a/0x40 [cfx_kasan]",
        " cfx_kasan_init+0xe/0x1000 [cfx_kasan]",
        " do_one_initcall+0x59/0x220",
        "",
        "Freed by task 94:",  # "Freed by task %d:"
        " kasan_save_stack+0x1e/0x40",
        " kasan_set_track+0x21/0x30",
        " kasan_save_free_info+0x2a/0x40",
        " ____kasan_slab_free+0x15e/0x1b0",
        " __kmem_cache_free+0xd3/0x2b0",
        " cfx_drop_node+0x11/0x20 [cfx_kasan]",
        " cfx_kasan_init+0x16/0x1000 [cfx_kasan]",
        "",
        "The buggy address belongs to the object at ffff888005f2a200",  # describe_object_addr()
        " which belongs to the cache kmalloc-64 of size 64",
        "The buggy address is located 8 bytes inside of",
        " 64-byte region [ffff888005f2a200, ffff888005f2a240)",
        "",
        "The buggy address belongs to the physical page:",  # print_address_description()
        # mm/debug.c __dump_page()
        "page:00000000d6a3c8f4 refcount:1 mapcount:0 mapping:0000000000000000 index:0x0 pfn:0x5f2a",
        "flags: 0x100000000000200(slab|node=0|zone=1)",
        "raw: 0100000000000200 ffff888001041640 dead000000000122 0000000000000000",
        "raw: 0000000000000000 0000000080200020 00000001ffffffff 0000000000000000",
        "page dumped because: kasan: bad access detected",
        "",
        "Memory state around the buggy address:",  # print_memory_metadata()
        " ffff888005f2a100: fa fb fb fb fb fb fb fb fc fc fc fc fc fc fc fc",
        " ffff888005f2a180: fa fb fb fb fb fb fb fb fc fc fc fc fc fc fc fc",
        ">ffff888005f2a200: fa fb fb fb fb fb fb fb fc fc fc fc fc fc fc fc",
        "                      ^",
        " ffff888005f2a280: fa fb fb fb fb fb fb fb fc fc fc fc fc fc fc fc",
        "==================================================================",  # end_report()
        "Disabling lock debugging due to kernel taint",  # kernel/panic.c add_taint()
        # kernel/panic.c check_panic_on_warn(): "%s: panic_on_warn set ...\n"
        "Kernel panic - not syncing: KASAN: panic_on_warn set ...",
        cpu(1, 94, "insmod", "BOE"),
        HW,
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x49/0x63",
        " panic+0x222/0x44b",
        " ? cfx_uaf_read+0x2c/0x40 [cfx_kasan]",
        " check_panic_on_warn.cold+0x17/0x17",
        " end_report.cold+0x55/0x67",
        " kasan_report+0xb4/0x120",
        " cfx_uaf_read+0x2c/0x40 [cfx_kasan]",
        *insmod_tail("cfx_kasan_init+0x1b/0x1000 [cfx_kasan]"),
        *panic_end("KASAN: panic_on_warn set ..."),
    ],
    11.440392,
)

# lib/ubsan.c ubsan_prologue() ("UBSAN: %s in %s:%d:%d"), __ubsan_handle_out_of_bounds()
# ("index %s is out of range for type %s"), ubsan_epilogue() (dump_stack(), the rule line,
# check_panic_on_warn("UBSAN")); no panic_on_warn here: the report ends with its rule line.
UBSAN = dmesg(
    [
        "================================================================================",  # ubsan_prologue()
        "UBSAN: array-index-out-of-bounds in /build/cfx/cfx_ubsan.c:14:9",
        "index 8 is out of range for type 'int [8]'",  # __ubsan_handle_out_of_bounds()
        cpu(0, 90, "insmod", "OE"),  # ubsan_epilogue() -> dump_stack()
        HW,
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x44/0x5c",
        " ubsan_epilogue+0x5/0x40",
        " __ubsan_handle_out_of_bounds.cold+0x44/0x49",
        " cfx_index_read+0x3d/0x40 [cfx_ubsan]",
        *insmod_tail("cfx_ubsan_init+0x12/0x1000 [cfx_ubsan]"),
        "================================================================================",  # ubsan_epilogue()
        "cfx_ubsan: table checked",  # the module's own next line
    ],
    6.918840,
)

# kernel/sched/core.c __schedule_bug(): msleep() with preemption disabled (no panic_on_warn).
SCHEDULING_WHILE_ATOMIC = dmesg(
    [
        "BUG: scheduling while atomic: insmod/91/0x00000002",  # "BUG: scheduling while atomic: %s/%d/0x%08x"
        "Modules linked in: cfx_atomic(OE+) qemu_fw_cfg",  # print_modules()
        "Preemption disabled at:",  # print_preempt_disable_ip() (CONFIG_DEBUG_PREEMPT)
        "[<ffffffffc020c02a>] cfx_atomic_sleep+0xa/0x30 [cfx_atomic]",  # print_ip_sym(): "%s[<%px>] %pS"
        cpu(0, 91, "insmod", "OE"),  # dump_stack()
        HW,
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x44/0x5c",
        " __schedule_bug.cold+0x7a/0x8b",
        " __schedule+0x7fd/0xa00",
        " schedule+0x5a/0xd0",
        " schedule_timeout+0x95/0x150",
        " ? __bpf_trace_tick_stop+0x10/0x10",
        " msleep+0x29/0x40",
        " cfx_atomic_sleep+0x1c/0x30 [cfx_atomic]",
        *insmod_tail("cfx_atomic_init+0xa/0x1000 [cfx_atomic]"),
        "cfx_atomic: woke up",
    ],
    12.003318,
)

# kernel/sched/core.c __might_resched() (CONFIG_DEBUG_ATOMIC_SLEEP): mutex_lock() under a spinlock.
SLEEPING_IN_ATOMIC = dmesg(
    [
        "BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580",  # "... at %s:%d"
        # "in_atomic(): %d, irqs_disabled(): %d, ..."
        "in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 92, name: insmod",
        "preempt_count: 1, expected: 0",  # "preempt_count: %x, expected: %x"
        "RCU nest depth: 0, expected: 0",  # "RCU nest depth: %d, expected: %u" (CONFIG_PREEMPT_RCU)
        "Preemption disabled at:",  # print_preempt_disable_ip()
        "[<ffffffffc021003e>] cfx_locked_update+0x1e/0x50 [cfx_sleep]",
        cpu(0, 92, "insmod", "OE"),  # dump_stack()
        HW,
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x44/0x5c",
        " __might_resched.cold+0xcc/0xe0",
        " mutex_lock+0x1a/0x40",
        " cfx_locked_update+0x2f/0x50 [cfx_sleep]",
        *insmod_tail("cfx_sleep_init+0xa/0x1000 [cfx_sleep]"),
    ],
    10.551020,
)

# lib/list_debug.c __list_del_entry_valid(): CHECK_DATA_CORRUPTION() with
# CONFIG_BUG_ON_DATA_CORRUPTION (Debian's): pr_err() of the message, then BUG(): lib/bug.c
# report_bug() ("kernel BUG at %s:%u!") and the invalid opcode oops.
LIST_CORRUPTION = dmesg(
    [
        # "list_del corruption, %px->next is LIST_POISON1 (%px)"
        "list_del corruption, ffff888004c1e2a8->next is LIST_POISON1 (dead000000000100)",
        "------------[ cut here ]------------",  # lib/bug.c report_bug(): CUT_HERE
        "kernel BUG at lib/list_debug.c:56!",  # "kernel BUG at %s:%u!"
        "invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",  # arch/x86/kernel/traps.c do_error_trap() -> __die_header()
        cpu(0, 95, "insmod", "OE"),
        HW,
        *x86_regs("__list_del_entry_valid.cold+0x3b/0x3f"),
        "Call Trace:",
        " <TASK>",
        " ? die+0x36/0x90",
        " ? do_trap+0xda/0x100",
        " ? __list_del_entry_valid.cold+0x3b/0x3f",
        " cfx_remove_node+0x15/0x40 [cfx_list]",
        *insmod_tail("cfx_list_init+0x2a/0x1000 [cfx_list]"),
        "Modules linked in: cfx_list(OE+) qemu_fw_cfg",
        "---[ end trace 0000000000000000 ]---",
        *x86_regs("__list_del_entry_valid.cold+0x3b/0x3f"),
        "Kernel panic - not syncing: Fatal exception",  # arch/x86/kernel/dumpstack.c oops_end()
        *panic_end("Fatal exception"),
    ],
    7.880012,
)

# arch/x86/mm/fault.c show_fault_oops() for a vmalloc address past an allocation's end, then
# dump_pagetable() and __die("Oops"); not a NULL pointer: "unable to handle page fault".
PAGE_FAULT = dmesg(
    [
        # "BUG: unable to handle page fault for address: %px"
        "BUG: unable to handle page fault for address: ffffc90000a3f000",
        "#PF: supervisor read access in kernel mode",  # "#PF: %s %s in %s mode"
        "#PF: error_code(0x0000) - not-present page",  # "#PF: error_code(0x%04lx) - %s"
        "PGD 100000067 P4D 100000067 PUD 1001b3067 PMD 1005a2067 PTE 0",  # dump_pagetable()
        "Oops: 0000 [#1] PREEMPT SMP NOPTI",  # page_fault_oops() -> __die("Oops")
        cpu(1, 97, "cfx-scan", "OE"),
        HW,
        *x86_regs("cfx_scan_table+0x3c/0x90 [cfx_vm]"),
        "Call Trace:",
        " <TASK>",
        " cfx_scan_worker+0x22/0x60 [cfx_vm]",
        " process_one_work+0x1c4/0x380",
        " worker_thread+0x4d/0x380",
        " ? rescuer_thread+0x3a0/0x3a0",
        " kthread+0xd7/0x100",
        " ? kthread_complete_and_exit+0x20/0x20",
        " ret_from_fork+0x22/0x30",
        " </TASK>",
        "Modules linked in: cfx_vm(OE) qemu_fw_cfg",
        "CR2: ffffc90000a3f000",  # page_fault_oops(): "CR2: %016lx"
        "---[ end trace 0000000000000000 ]---",
        *x86_regs("cfx_scan_table+0x3c/0x90 [cfx_vm]"),
        "Kernel panic - not syncing: Fatal exception",
        *panic_end("Fatal exception"),
    ],
    412.118760,
)

# init/do_mounts.c mount_block_root(): panic("VFS: Unable to mount root fs on %s", b).
VFS_PANIC = dmesg(
    [
        'VFS: Cannot open root device "vda9" or unknown-block(0,0): error -6',  # mount_block_root()
        'Please append a correct "root=" boot option; here are the available partitions:',
        "List of all partitions:",  # printk_all_partitions()
        "No filesystem could mount root, tried: ",
        "",
        "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)",
        cpu(0, 1, "swapper/0", ""),
        HW,
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x44/0x5c",
        " panic+0x118/0x2f4",
        " mount_block_root+0x1d2/0x1ea",
        " prepare_namespace+0x136/0x165",
        " kernel_init_freeable+0x25a/0x284",
        " ? rest_init+0xd0/0xd0",
        " kernel_init+0x16/0x130",
        " ret_from_fork+0x22/0x30",
        " </TASK>",
        *panic_end("VFS: Unable to mount root fs on unknown-block(0,0)"),
    ],
    1.702551,
)


def arm64_regs(pc: str, lr: str) -> list[str]:
    """arch/arm64/kernel/process.c __show_regs(): pstate, pc, lr, sp, x29..x0 three a line."""
    lines = [
        "pstate: 60000005 (nZCv daif -PAN -UAO -TCO -DIT -SSBS BTYPE=--)",  # print_pstate()
        "pc : " + pc,  # "pc : %pS"
        "lr : " + lr,  # "lr : %pS"
        "sp : ffff80000a4cbb60",
    ]
    regs = ["x%-2d: %016x" % (n, (0xFFFF80000A4CBB60 if n == 29 else n * 0x1000)) for n in range(29, -1, -1)]
    return lines + [" ".join(regs[i : i + 3]) for i in range(0, len(regs), 3)]


def arm64_tail(init: str) -> list[str]:
    """arch/arm64/kernel/stacktrace.c dump_backtrace(): " %pSb" per frame, no markers."""
    return [
        " %s" % init,
        " do_one_initcall+0x50/0x2b0",
        " do_init_module+0x50/0x210",
        " load_module+0x1e5c/0x22b0",
        " __do_sys_finit_module+0xac/0x130",
        " __arm64_sys_finit_module+0x28/0x40",
        " invoke_syscall+0x78/0x100",
        " el0_svc_common.constprop.0+0x4c/0xf4",
        " do_el0_svc+0x34/0x4c",
        " el0_svc+0x34/0x10c",
        " el0t_64_sync_handler+0xf4/0x120",
        " el0t_64_sync+0x18c/0x190",
    ]


# arch/arm64/mm/fault.c die_kernel_fault() ("Unable to handle kernel %s at virtual address
# %016lx"), mem_abort_decode(), show_pte(); arch/arm64/kernel/traps.c die() -> __die()
# ("Internal error: %s: %016lx [#%d]"), panic("%s: Fatal exception") with panic_on_oops.
ARM64_NULL = dmesg(
    [
        "Unable to handle kernel NULL pointer dereference at virtual address 0000000000000008",
        "Mem abort info:",  # mem_abort_decode()
        "  ESR = 0x0000000096000006",
        "  EC = 0x25: DABT (current EL), IL = 32 bits",
        "  SET = 0, FnV = 0",
        "  EA = 0, S1PTW = 0",
        "  FSC = 0x06: level 2 translation fault",
        "Data abort info:",  # data_abort_decode()
        "  ISV = 0, ISS = 0x00000006",
        "  CM = 0, WnR = 0",
        "user pgtable: 4k pages, 48-bit VAs, pgdp=0000000041f8b000",  # show_pte()
        "[0000000000000008] pgd=0800000041f8c003, p4d=0800000041f8c003, pud=0800000041f8d003, pmd=0000000000000000",
        "Internal error: Oops: 0000000096000006 [#1] PREEMPT SMP",  # __die()
        "Modules linked in: cfx_ring(OE+) qemu_fw_cfg",  # print_modules()
        cpu(1, 211, "insmod", "OE", ARM_RELEASE),  # show_regs() -> show_regs_print_info()
        ARM_HW,
        *arm64_regs("cfx_flush_ring+0x8/0x20 [cfx_ring]", "cfx_ring_init+0x1c/0x1000 [cfx_ring]"),
        "Call trace:",  # dump_backtrace()
        " cfx_flush_ring+0x8/0x20 [cfx_ring]",
        *arm64_tail("cfx_ring_init+0x1c/0x1000 [cfx_ring]"),
        "Code: d503233f f9400001 d2800002 b9001022 (f9400421) ",  # dump_kernel_instr()
        "---[ end trace 0000000000000000 ]---",  # oops_exit()
        "Kernel panic - not syncing: Oops: Fatal exception",  # die(): panic("%s: Fatal exception", str)
        "SMP: stopping secondary CPUs",  # arch/arm64/kernel/smp.c smp_send_stop()
        "Kernel Offset: 0x4a7e80000000 from 0xffff800008000000",  # arch/arm64/kernel/setup.c dump_kernel_offset()
        "PHYS_OFFSET: 0xfffffff5c0000000",
        "CPU features: 0x00000,0040080c,6601720b",
        "Memory Limit: none",
        "---[ end Kernel panic - not syncing: Oops: Fatal exception ]---",
    ],
    12.345678,
)

# lib/bug.c report_bug() then arch/arm64/kernel/traps.c bug_handler(): die("Oops - BUG", regs, esr).
ARM64_BUG = dmesg(
    [
        "------------[ cut here ]------------",
        "kernel BUG at drivers/misc/cfx/cfx_bug.c:12!",
        "Internal error: Oops - BUG: 00000000f2000800 [#1] PREEMPT SMP",
        "Modules linked in: cfx_bug(OE+) qemu_fw_cfg",
        cpu(0, 205, "insmod", "OE", ARM_RELEASE),
        ARM_HW,
        *arm64_regs("cfx_check_state+0x10/0x20 [cfx_bug]", "cfx_bug_init+0x14/0x1000 [cfx_bug]"),
        "Call trace:",
        " cfx_check_state+0x10/0x20 [cfx_bug]",
        *arm64_tail("cfx_bug_init+0x14/0x1000 [cfx_bug]"),
        "Code: 7100043f 54000049 d65f03c0 d4210000 (d4210000) ",
        "---[ end trace 0000000000000000 ]---",
        "Kernel panic - not syncing: Oops - BUG: Fatal exception",
        "SMP: stopping secondary CPUs",
        "Kernel Offset: 0x4a7e80000000 from 0xffff800008000000",
        "---[ end Kernel panic - not syncing: Oops - BUG: Fatal exception ]---",
    ],
    9.100024,
)

# Linux 4.19's arch/x86/mm/fault.c no_context() -> show_fault_oops(): the older wording
# ("BUG: unable to handle kernel NULL pointer dereference at %px"), no #PF lines, no <TASK>.
NULL_4_19 = dmesg(
    [
        "BUG: unable to handle kernel NULL pointer dereference at 000000000000000c",
        "PGD 0 P4D 0 ",  # dump_pagetable()
        "Oops: 0000 [#1] SMP PTI",  # __die(): "%s: %04lx [#%d]%s%s%s%s%s"
        "CPU: 3 PID: 2011 Comm: insmod Tainted: G           OE     4.19.0-25-amd64 #1 Debian 4.19.289-2",
        "Hardware name: Dell Inc. PowerEdge R640/0W23H8, BIOS 2.11.2 004/21/2021",
        "RIP: 0010:cfx_flush_ring+0x5/0x20 [cfx_ring]",  # show_ip()
        "Code: 48 8b 47 08 c3 0f 1f 44 00 00 8b 47 0c 89 c2 2b 57 08 89 47 08 89 d0 c3 <8b> 47 0c c3 00 00 00",
        "RSP: 0018:ffffb2a1c37bfc88 EFLAGS: 00010246",
        "RAX: 0000000000000000 RBX: ffffffffc0a1e000 RCX: 0000000000000000",
        "RDX: 0000000000000000 RSI: ffffffffc0a1e000 RDI: 0000000000000000",
        "RBP: ffff9d6e47a3c740 R08: 0000000000000010 R09: ffff9d6e47a3c740",
        "R10: ffff9d6e4a2e14b0 R11: 0000000000000100 R12: ffffb2a1c37bfc98",
        "R13: 0000000000000000 R14: 0000000000000000 R15: 0000000000000000",
        "FS:  00007f8a2f4d6740(0000) GS:ffff9d6e7fac0000(0000) knlGS:0000000000000000",
        "CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033",
        "CR2: 000000000000000c CR3: 000000085fa3a004 CR4: 00000000007606e0",
        "DR0: 0000000000000000 DR1: 0000000000000000 DR2: 0000000000000000",
        "DR3: 0000000000000000 DR6: 00000000fffe0ff0 DR7: 0000000000000400",
        "PKRU: 55555554",
        "Call Trace:",  # 4.19's show_trace_log_lvl(): no <TASK> marker
        " cfx_ring_init+0x11/0x1000 [cfx_ring]",
        " ? 0xffffffffc0a22000",
        " do_one_initcall+0x46/0x1c8",
        " ? kmem_cache_alloc_trace+0x155/0x1d0",
        " do_init_module+0x5a/0x210",
        " load_module+0x2167/0x2440",
        " ? __do_sys_finit_module+0xad/0x110",
        " __do_sys_finit_module+0xad/0x110",
        " do_syscall_64+0x53/0x110",
        " entry_SYSCALL_64_after_hwframe+0x44/0xa9",
        "RIP: 0033:0x7f8a2f5f5f59",
        "Code: 00 c3 66 2e 0f 1f 84 00 00 00 00 00 0f 1f 44 00 00 48 89 f8 48 89 f7 48 89 d6 48 89 ca 4d 89 c2",
        "RSP: 002b:00007ffd6e3a1d38 EFLAGS: 00000246 ORIG_RAX: 0000000000000139",
        "Modules linked in: cfx_ring(OE+) xt_conntrack nf_conntrack ipmi_si dcdbas",
        "CR2: 000000000000000c",
        "---[ end trace 5f4c0a1bc4e6d7a2 ]---",
        "RIP: 0010:cfx_flush_ring+0x5/0x20 [cfx_ring]",
        "Kernel panic - not syncing: Fatal exception",
        "Kernel Offset: 0x2a000000 from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)",
        "---[ end Kernel panic - not syncing: Fatal exception ]---",
    ],
    88213.441201,
)


def interleave(first: Sequence[str], second: Sequence[str]) -> list[str]:
    """Two reports printed at once, line by line (first, second, first, ...)."""
    merged: list[str] = []
    for pair in zip(first, second):
        merged.extend(pair)
    longer = first if len(first) > len(second) else second
    return merged + list(longer[min(len(first), len(second)) :])


def soft_lockup(cpu_n: int, pid: int, func: str, module: str) -> list[str]:
    """kernel/watchdog.c watchdog_timer_fn(): the report, with the interrupted regs (no panic)."""
    return [
        "watchdog: BUG: soft lockup - CPU#%d stuck for 22s! [insmod:%d]"
        % (cpu_n, pid),  # "BUG: soft lockup - CPU#%d stuck for %us! [%s:%d]"
        "Modules linked in: %s(OE+) qemu_fw_cfg" % module,  # print_modules()
        cpu(cpu_n, pid, "insmod", "OEL"),  # show_regs()
        HW,
        *x86_regs("%s+0x1a/0xfc0 [%s]" % (func, module)),
        "Call Trace:",
        " <TASK>",
        *insmod_tail("%s_init+0xa/0x1000 [%s]" % (module, module)),
    ]


def caller_ids(lines: Sequence[str], ctx: str) -> list[str]:
    """kernel/printk/printk.c info_print_prefix() with CONFIG_PRINTK_CALLER: "[%6s] " after the time."""
    return ["[%6s] %s" % (ctx, line) for line in lines]


def lockups_at_once(with_ids: bool) -> str:
    """Two CPUs' soft lockups printed at the same time: CPU 0's in cfx_spin, CPU 1's in cfx_poll."""
    first = soft_lockup(0, 89, "cfx_spin_wait", "cfx_spin")
    second = soft_lockup(1, 90, "cfx_poll_hw", "cfx_poll")
    if with_ids:
        first, second = caller_ids(first, "C0"), caller_ids(second, "C1")
    return dmesg(interleave(first, second), 40.001)


WRITTEN: tuple[tuple[str, str], ...] = (
    ("rcu_stall", RCU_STALL),
    ("hard_lockup", HARD_LOCKUP),
    ("double_fault", DOUBLE_FAULT),
    ("stack_protector", STACK_PROTECTOR),
    ("kasan", KASAN),
    ("ubsan", UBSAN),
    ("scheduling_while_atomic", SCHEDULING_WHILE_ATOMIC),
    ("sleeping_in_atomic", SLEEPING_IN_ATOMIC),
    ("list_corruption", LIST_CORRUPTION),
    ("page_fault", PAGE_FAULT),
    ("vfs_panic", VFS_PANIC),
    ("arm64_null", ARM64_NULL),
    ("arm64_bug", ARM64_BUG),
    ("null_4_19", NULL_4_19),
)
