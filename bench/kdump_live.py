"""Two side-by-side timings, each as a ratio:

1. crash_open on a real kdump dump (makedumpfile -l -d 31), through a real agent (new session:
   crash starts in its sandbox and runs `sys`), against a fresh `crash -s vmlinux dump` running `sys`;
2. on the VM host (tests/rig/vmhost.py, TCG): a drgn query on an open live session (drgn_run
   through the controller over SSH) against a fresh drgn on /proc/kcore started over ssh per query.

  cd /work/wt-10 && .venv/bin/python bench/kdump_live.py --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from crashfleet.controller.bundle import write_bundle  # noqa: E402
from tests.dumps.agentproc import spawn  # noqa: E402
from tests.dumps.conftest import _link  # noqa: E402
from tests.dumps.fixture import ensure  # noqa: E402
from tests.dumps.kdump_fixture import ensure_kdump  # noqa: E402
from tests.rig.vmhost import running  # noqa: E402

QUERY = "len(list(for_each_task(prog)))"
FRESH_DRGN = (
    "import drgn; from drgn.helpers.linux import for_each_task; p = drgn.Program(); "
    "p.set_kernel(); p.load_debug_info([{vmlinux!r}]); print(len(list(for_each_task(p))))"
)


def kdump_open(repeat: int, work: Path) -> tuple[list[float], list[float]]:
    fx = ensure()
    kd = ensure_kdump(fx)
    dumps = work / "dumps" / "202612011603"
    _link(kd.dump("lzo"), dumps / "dump.202612011603")
    _link(kd.vmlinux, dumps / kd.vmlinux.name)
    zipapp = work / "agent.pyz"
    write_bundle(zipapp)
    agent = spawn(zipapp, work / "agent", {}, work / "dumps")
    ours, fresh = [], []
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            opened = agent.result("dumps.open", vmcore=str(dumps / "dump.202612011603"))
            ours.append(time.perf_counter() - start)
            agent.result("dumps.close", session_id=opened["session_id"])
            start = time.perf_counter()
            subprocess.run(
                ["crash", "-s", "--no_crashrc", str(kd.vmlinux), str(dumps / "dump.202612011603")],
                input=b"sys\nquit\n",
                capture_output=True,
                cwd=str(work),
                check=True,
            )
            fresh.append(time.perf_counter() - start)
    finally:
        agent.stop()
    return ours, fresh


async def live_query(repeat: int, work: Path) -> tuple[list[float], list[float]]:
    from crashfleet.controller.runtime import Runtime
    from crashfleet.controller.settings import Settings
    from crashfleet.controller.tools import dumps as d

    fx = ensure()
    ours, fresh = [], []
    with running(fx, work / "vm") as vm:
        policy = shlex.quote(json.dumps({"live_kernel": True}))
        vm.ssh(f"mkdir -p /etc/crashfleet && echo {policy} > /etc/crashfleet/agent-policy.json")
        inventory = work / "inventory.yml"
        inventory.write_text(
            yaml.safe_dump(
                {
                    "all": {
                        "hosts": {
                            "vm01": {
                                "ansible_host": "127.0.0.1",
                                "ansible_port": vm.port,
                                "ansible_user": "root",
                                "ansible_ssh_private_key_file": str(vm.image.key),
                                "ansible_python_interpreter": "/usr/bin/python3",
                            }
                        }
                    }
                }
            )
        )
        rt = Runtime.create(
            Settings(
                inventory=inventory, ssh_known_hosts=vm.known_hosts, audit_log=work / "audit.jsonl", host_deadline=300
            ),
            who="bench",
        )
        try:
            opened = await d.crash_open(rt, "vm01", live=True)
            sid = opened.session.session_id
            await d.drgn_run(rt, sid, QUERY)  # the worker is warm after the open's summary
            vmlinux = f"/usr/lib/debug/boot/vmlinux-{fx.release}"
            for _ in range(repeat):
                start = time.perf_counter()
                got = await d.drgn_run(rt, sid, QUERY)
                ours.append(time.perf_counter() - start)
                assert got.ok, got
                start = time.perf_counter()
                done = vm.ssh("/opt/crashfleet/drgn/bin/python3 -c " + shlex.quote(FRESH_DRGN.format(vmlinux=vmlinux)))
                fresh.append(time.perf_counter() - start)
                assert done.returncode == 0, done.stderr
        finally:
            await rt.close()
    return ours, fresh


def row(name: str, ours: list[float], peer_name: str, peer: list[float]) -> None:
    a, b = statistics.median(ours), statistics.median(peer)
    print(f"{name:34} median {a:7.3f} s | {peer_name:34} median {b:7.3f} s | ratio {a / b:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-vm", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        work = Path(tmp)
        ours, fresh = kdump_open(args.repeat, work)
        row("crash_open (kdump lzo -d 31)", ours, "fresh crash -s + sys", fresh)
        if not args.skip_vm:
            (work / "vm").mkdir()
            ours, fresh = asyncio.run(live_query(args.repeat, work))
            row("drgn_run on a live session (VM)", ours, "fresh drgn on /proc/kcore over ssh", fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
