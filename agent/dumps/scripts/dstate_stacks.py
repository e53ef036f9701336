"""Stacks of tasks in uninterruptible sleep (D state), identical stacks grouped."""
# Runs in a drgn session: `prog` and `args` are given, drgn's Linux helpers imported.

groups = {}
for task in for_each_task(prog):
    if task_state_to_char(task) != "D":
        continue
    try:
        frames = tuple(f.name or hex(f.pc) for f in prog.stack_trace(task))
    except Exception as exc:  # noqa: BLE001 - an unwindable task still counts
        frames = ("(no stack: %s)" % exc,)
    groups.setdefault(frames, []).append("%s/%d" % (task.comm.string_().decode(), task.pid))
if not groups:
    print("no task is in D state")
for frames, tasks in sorted(groups.items(), key=lambda kv: -len(kv[1])):
    print("%d task(s): %s" % (len(tasks), ", ".join(tasks[:20]) + (" ..." if len(tasks) > 20 else "")))
    for frame in frames:
        print("    " + frame)
    print()
