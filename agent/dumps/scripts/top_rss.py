"""Top tasks by resident memory (RSS). args: [N] (default 15)."""
# Runs in a drgn session: `prog` and `args` are given, drgn's Linux helpers imported.

count = int(args[0]) if args else 15
page = 4096
rows = []
for task in for_each_task(prog):
    if not task.mm:
        continue
    try:
        rss = task_rss(prog, task)
        pages = rss.file + rss.anon + rss.shmem
    except Exception:  # noqa: BLE001 - older drgn: read the counters directly
        pages = sum(c.counter.value_() for c in task.mm.rss_stat.count)
    rows.append((pages, task.pid.value_(), task.comm.string_().decode()))
rows.sort(reverse=True)
print("%8s %10s  %s" % ("PID", "RSS KiB", "COMM"))
for pages, pid, comm in rows[:count]:
    print("%8d %10d  %s" % (pid, pages * page // 1024, comm))
if not rows:
    print("(no user tasks with memory)")
