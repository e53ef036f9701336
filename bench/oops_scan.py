"""CPU of agent/dumps/oops.py's scan() over a 100 MB kernel log, against `grep -m1 -E` looking for
the same report headers in the same file (what an engineer would run first), in one run.

    .venv/bin/python bench/oops_scan.py            # ~1 min on 2 cores
    .venv/bin/python bench/oops_scan.py --mb 400 --runs 5

Three logs, each a file of ordinary dmesg lines with a real report (the fixture's sysrq panic,
tests/unit/data/oops/serial-sysrq.log) at its end:
  typical  boot and service messages, one stack dump per MiB (a page allocation failure);
  dense    nothing but page allocation failures, a stack dump every ~1 KiB (the worst case: every
           byte is near a "Call Trace", so every anchor is searched over the whole file);
  none     the typical log without the report (scan's answer: no report, after reading it all).
grep stops at its first match, which here is the report: it reads the same bytes scan does.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from crashfleet.agent.dumps.oops import scan  # noqa: E402 - after the path
from tests.unit import oops_texts as texts  # noqa: E402

REPORT = (ROOT / "tests/unit/data/oops/serial-sysrq.log").read_bytes().split(b"Run /init as init process")[1]
GREP = r"BUG: |BUG at |WARNING: |INFO: task |detected stall|hard LOCKUP|Kernel panic - not syncing|UBSAN: | \[#"
NOISE = (
    b"[%12.6f] EXT4-fs (vda1): mounted filesystem with ordered data mode. Quota mode: none.\n"
    b'[%12.6f] audit: type=1400 audit(1700000000.123:45): apparmor="STATUS" operation="profile_load"\n'
    b"[%12.6f] systemd[1]: Started Session 12 of User root.\n"
    b"[%12.6f] IPv6: ADDRCONF(NETDEV_CHANGE): eth0: link becomes ready\n"
    b"[%12.6f] INFO: NMI handler (perf_event_nmi_handler) took too long to run: 1.234 msecs\n"
    b"[%12.6f] TCP: request_sock_TCP: Possible SYN flooding on port 80. Sending cookies.\n" % (1.0, 2.0, 3.0, 4.0, 5, 6)
)
STACK = texts.dmesg(
    [
        "kworker/u8:2: page allocation failure: order:4, mode:0x40cc0(GFP_KERNEL|__GFP_COMP), nodemask=(null)",
        texts.cpu(1, 211, "kworker/u8:2", "OE"),
        texts.HW,
        "Workqueue: events_unbound cfx_refill [cfx_ring]",
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x44/0x5c",
        " warn_alloc+0x13a/0x1b0",
        " __alloc_pages_slowpath.constprop.0+0xc8e/0xe70",
        " __alloc_pages+0x305/0x330",
        " cfx_refill+0x2a/0x90 [cfx_ring]",
        " process_one_work+0x1c4/0x380",
        " worker_thread+0x4d/0x380",
        " kthread+0xd7/0x100",
        " ret_from_fork+0x22/0x30",
        " </TASK>",
    ],
    100.0,
).encode()
BANNER = b"[    0.000000] Linux version 6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP\n"


def build(kind: str, size: int, path: Path) -> None:
    if kind == "dense":
        body = STACK * (size // len(STACK))
    else:
        mib = NOISE * ((1 << 20) // len(NOISE)) + STACK
        body = mib * (size // len(mib))
    path.write_bytes(BANNER + body + (b"" if kind == "none" else REPORT))


def cpu_of_scan(path: Path, runs: int) -> tuple[float, str]:
    times, title = [], ""
    for _ in range(runs):
        started = time.process_time()
        answer = scan(path, max_bytes=1 << 40)
        times.append(time.process_time() - started)
        title = str(answer["title"])
    return statistics.median(times), title


def cpu_of_grep(path: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(["grep", "-m1", "-E", GREP, str(path)], stdout=subprocess.DEVNULL, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=100, help="the logs' size in MiB")
    parser.add_argument("--runs", type=int, default=3, help="runs of each, the median is shown")
    args = parser.parse_args()
    print("%-8s %8s %12s %12s  %s" % ("log", "MiB", "scan CPU s", "grep CPU s", "scan's title"))
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("typical", "dense", "none"):
            path = Path(tmp) / f"{kind}.log"
            build(kind, args.mb << 20, path)
            scanned, title = cpu_of_scan(path, args.runs)
            grepped = cpu_of_grep(path, args.runs)
            print("%-8s %8.0f %12.3f %12.3f  %s" % (kind, path.stat().st_size / (1 << 20), scanned, grepped, title))
            path.unlink()


if __name__ == "__main__":
    main()
