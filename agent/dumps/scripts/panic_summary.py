"""Panic summary: message, crashing task and its stack, taint, uptime, last log lines."""
# Runs in a drgn session: `prog` and `args` are given, drgn's Linux helpers imported.
# args: [N] = how many log lines to show (default 20).

lines = int(args[0]) if args else 20
dmesg = get_dmesg(prog).decode("utf-8", "replace").splitlines()
try:
    message = panic_message(prog)
    message = message.decode("utf-8", "replace") if message else None
except Exception:  # noqa: BLE001 - older drgn or kernel: fall back to the log
    message = next((l.split("] ", 1)[-1] for l in reversed(dmesg) if "Kernel panic" in l), None)
print("panic:   %s" % (message or "(no panic message found: not a panic dump?)"))
live = bool(prog.flags & ProgramFlags.IS_LIVE)  # a running kernel (/proc/kcore): nothing panicked
task = None
if not live:
    try:
        task = panic_task(prog)
    except Exception:  # noqa: BLE001
        task = prog.crashed_thread().object
if task is not None and task:
    print("task:    %s (pid %d, cpu %d)" % (task.comm.string_().decode(), task.pid, task_cpu(task)))
else:
    print("task:    (none: %s)" % ("a live kernel" if live else "no panicking task recorded"))
try:
    print("taint:   %s" % (tainted(prog) or "none"))
except Exception:  # noqa: BLE001
    print("taint:   0x%x" % prog["tainted_mask"].value_())
try:
    print("uptime:  %d s" % prog["tk_core"].timekeeper.ktime_sec.value_())
except Exception:  # noqa: BLE001
    pass
print("release: %s" % prog["UTS_RELEASE"].string_().decode())
if task is not None and task:
    print("\nstack of the crashing task:")
    for i, frame in enumerate(prog.stack_trace(task)):
        print("  #%-2d %s" % (i, frame.name or hex(frame.pc)))
print("\nlast %d log lines:" % lines)
for line in dmesg[-lines:]:
    print("  " + line)
