"""Dump benchmark, one run each, on one rig host with the real fixture vmcore:

1. the 2nd crash command on an open session vs a fresh `crash -s vmlinux vmcore` per command
2. a drgn query on an open session vs a fresh drgn start (python -c, load, query)
3. output_page near the end of a large crash output vs its first page
4. output_search over that output vs `grep -c` on the host (same file, same pattern)

  cd /work/wt/dumps && .venv/bin/python bench/dumps.py
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from crashfleet.controller.runtime import Runtime  # noqa: E402
from crashfleet.controller.settings import Settings  # noqa: E402
from crashfleet.controller.tools import dumps as d  # noqa: E402
from crashfleet.controller.tools import jobs as j  # noqa: E402
from crashfleet.controller.tools import output as o  # noqa: E402
from tests.dumps.fixture import ensure  # noqa: E402
from tests.rig import Rig, free_port  # noqa: E402

BIG_QWORDS = 2_800_000  # `rd -p -64 0 N`: N/2 lines of ~75 bytes, ~100 MB
DRGN_QUERY = "len(list(for_each_task(prog)))"


def timed(fn: Any, *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


async def atimed(coro: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = await coro
    return time.perf_counter() - start, result


def fresh_crash(vmlinux: Path, vmcore: Path, work: str) -> None:
    subprocess.run(
        ["crash", "-s", "--no_crashrc", "--no_scroll", str(vmlinux), str(vmcore)],
        input=b"sys\nquit\n",
        capture_output=True,
        cwd=work,
        check=True,
    )


def fresh_drgn(vmlinux: Path, vmcore: Path) -> None:
    code = (
        "import drgn\nfrom drgn.helpers.linux import for_each_task\nprog = drgn.Program()\n"
        f"prog.set_core_dump({str(vmcore)!r})\nprog.load_debug_info([{str(vmlinux)!r}])\n"
        f"print({DRGN_QUERY})"
    )
    subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)


async def run_to_end(rt: Runtime, sid: str, command: str) -> Any:
    """crash_run, then job_status until it ends when it outlived command_wait (a job)."""
    result = await d.crash_run(rt, sid, command, timeout=600)
    while result.job_id and (await j.job_status(rt, result.job_id)).summary.running:
        await asyncio.sleep(0.5)
    return result


async def main() -> None:
    fx = ensure()
    base = Path(tempfile.mkdtemp(prefix="crashfleet-bench-dumps-"))
    dumps = Path(tempfile.mkdtemp(prefix="crashfleet-bench-", dir="/var/crash"))
    (dumps / "vmcore").hardlink_to(fx.vmcore("sysrq"))
    (dumps / fx.vmlinux.name).hardlink_to(fx.vmlinux)
    rig = Rig(base / "rig", 1, port=free_port(1)).up()
    rt = None
    try:
        doc = yaml.safe_load(rig.inventory.read_text())
        for hostvars in doc["all"]["children"]["web"]["hosts"].values():
            hostvars.update(crashfleet_dump_dirs=[str(dumps)], ansible_python_interpreter=sys.executable)
        inventory = base / "inventory.yml"
        inventory.write_text(yaml.safe_dump(doc))
        rt = Runtime.create(
            Settings(
                inventory=inventory, ssh_known_hosts=rig.known_hosts, audit_log=base / "audit.jsonl", host_deadline=600
            ),
            who="bench",
        )
        opened = await d.crash_open(rt, "web01")
        sid = opened.session.session_id
        await d.crash_run(rt, sid, "sys")
        warm = [(await atimed(d.crash_run(rt, sid, "sys")))[0] for _ in range(20)]
        cold = [timed(fresh_crash, fx.vmlinux, fx.vmcore("sysrq"), str(base)) for _ in range(3)]
        row(
            "crash: 2nd command on open session (sys, median of 20)",
            statistics.median(warm),
            "fresh crash -s per command (median of 3)",
            statistics.median(cold),
            ">= 50x",
        )
        await d.drgn_run(rt, sid, "1")  # the worker starts on first use
        dwarm = [(await atimed(d.drgn_run(rt, sid, DRGN_QUERY)))[0] for _ in range(20)]
        dcold = [timed(fresh_drgn, fx.vmlinux, fx.vmcore("sysrq")) for _ in range(3)]
        row(
            "drgn: query on open session (median of 20)",
            statistics.median(dwarm),
            "fresh python+drgn load+query (median of 3)",
            statistics.median(dcold),
            "(no target)",
        )

        small = await d.crash_run(rt, sid, "sys")
        gen_s, big = await atimed(run_to_end(rt, sid, f"rd -p -64 0 {BIG_QWORDS}"))
        first = [(await atimed(o.output_page(rt, big.output_id)))[0] for _ in range(20)]
        cursor, prev, pages = None, None, 0  # walk to the last page once, then time the one before it
        while True:
            got = await o.output_page(rt, big.output_id, cursor)
            pages += 1
            if not got.next_cursor:
                break
            prev, cursor = cursor, got.next_cursor
        oid = big.output_id.split(":")[1]
        data = rig.hosts[0].agent_dir / "store" / oid / "data"
        mb = data.stat().st_size / 1e6
        print(f"big output: {got.total_lines} lines, {mb:.0f} MB, written by crash in {gen_s:.1f} s")
        end = [(await atimed(o.output_page(rt, big.output_id, prev)))[0] for _ in range(20)]
        row(
            f"output_page near the end (page {pages - 1} of {pages}, median of 20)",
            statistics.median(end),
            "output_page first page",
            statistics.median(first),
            "flat, < 2x",
            invert=True,
        )
        srch, grep = [], []
        for _ in range(9):  # interleaved, so both see the same machine load
            srch.append((await atimed(o.output_search(rt, big.output_id, "zzzz-no-match")))[0])
            grep.append(timed(lambda: subprocess.run(["grep", "-c", "zzzz-no-match", str(data)], capture_output=True)))
        ping = [(await atimed(o.output_search(rt, small.output_id, "zzzz-no-match")))[0] for _ in range(9)]
        print(
            f"output_search round trip on a one-page output (SSH, agent, controller): "
            f"{statistics.median(ping) * 1000:.1f} ms (median of 9)"
        )
        row(
            f"output_search over {mb:.0f} MB (no match: a full scan)",
            statistics.median(srch),
            "grep -c on the host",
            statistics.median(grep),
            ">= 0.5x grep's speed",
            invert=True,
        )
    finally:
        if rt is not None:
            await rt.close()
        rig.down()
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(dumps, ignore_errors=True)


def row(ours_label: str, ours: float, peer_label: str, peer: float, target: str, invert: bool = False) -> None:
    """speedup = peer/ours; with invert, ours/peer (time relative to the reference)."""
    ratio = ours / peer if invert else peer / ours
    name = "ours/reference time" if invert else "speedup"
    print(
        f"{ours_label}: {ours * 1000:.1f} ms | {peer_label}: {peer * 1000:.1f} ms | {name} {ratio:.2f}x "
        f"(target {target})",
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
