"""Memory summary: total, free, page cache, anon, slab, in MiB."""
# Runs in a drgn session: `prog` and `args` are given, drgn's Linux helpers imported.

try:
    page = prog.constant("PAGE_SIZE").value_()
except Exception:  # noqa: BLE001 - not a constant in this kernel's debuginfo
    page = 4096


def mib(pages):
    return "%10.1f MiB" % (pages * page / 1048576.0)


def stat(array, name):
    try:
        return array[prog.constant(name)].counter.value_()
    except Exception:  # noqa: BLE001 - counter missing in this kernel
        return None


print("total      " + mib(totalram_pages(prog)))
rows = [("free", "vm_zone_stat", "NR_FREE_PAGES"), ("file", "vm_node_stat", "NR_FILE_PAGES"),
        ("anon", "vm_node_stat", "NR_ANON_MAPPED"), ("shmem", "vm_node_stat", "NR_SHMEM"),
        ("slab_r", "vm_node_stat", "NR_SLAB_RECLAIMABLE_B"),
        ("slab_u", "vm_node_stat", "NR_SLAB_UNRECLAIMABLE_B"),
        ("pagetab", "vm_node_stat", "NR_PAGETABLE"), ("kstack", "vm_node_stat", "NR_KERNEL_STACK_KB")]
for label, array, name in rows:
    value = stat(prog[array], name)
    if value is None:
        continue
    if name == "NR_KERNEL_STACK_KB":
        value = value * 1024 // page
    elif name.endswith("_B"):  # these counters are in bytes, not pages
        value //= page
    print("%-10s %s" % (label, mib(value)))
