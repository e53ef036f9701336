"""Captures the unit tests' real data again, on the rig (as root), one part at a time:

    .venv/bin/python -m pytest -p no:cacheprovider tests/unit/data/recapture.py::test_bpftrace_maps

and ::test_capture_views, ::test_dumps_sys_and_bt, ::test_profile_stacks, ::test_oops_logs,
::test_oops_captures. Each part overwrites its files here. The unit tests' expected figures were read
off these files: after a new capture, check them again (README.md).
Not collected by a plain pytest run: its name is not test_*.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from crashfleet.controller.runtime import Runtime
from crashfleet.controller.tools import capture as cap
from crashfleet.controller.tools import dumps as d
from crashfleet.controller.tools.fleet import fleet_run
from crashfleet.controller.tools.jobs import job_cancel
from tests.capture.conftest import lab  # noqa: F401 - the namespace lab, a fixture
from tests.capture.netlab import NetLab
from tests.dumps.conftest import drt, dump_fixture, dump_fleet  # noqa: F401 - the dump fleet, fixtures
from tests.dumps.crash_kinds import ensure_kinds
from tests.integration.test_bpftrace import started_job, tracefs  # noqa: F401 - tracefs is a fixture

DATA = Path(__file__).parent
BPF_PROGRAM = (
    "BEGIN { @agent = curtask->real_parent->real_parent->tgid; }\n"
    "tracepoint:sched:sched_process_exec /curtask->real_parent->real_parent->tgid == @agent/ "
    "{ @execs[comm] = count(); }\n"
    "tracepoint:syscalls:sys_enter_write /curtask->real_parent->real_parent->tgid == @agent && "
    'comm != "bpftrace"/ { @write_bytes = hist(args->count); }\n'
    "END { clear(@agent); }"
)
# Catalogue commands each host runs while it traces: web03 runs the most, and writes the most.
BPF_RUNS = {"web01": ["uname"] * 2, "web02": ["uname"] * 3, "web03": ["uname"] * 8 + ["meminfo"] * 4}


def save(name: str, data: Any) -> None:
    text = data if isinstance(data, str) else json.dumps(data, indent=1, sort_keys=True) + "\n"
    text = re.sub(r"\[\s+(\d+),\s+(\"[^\"]*\")\s+\]", r"[\1, \2]", text)  # a fingerprint on one line
    (DATA / name).write_text(text)


# -- bpftrace: each host's maps, as the agent parsed them ----------------------


async def test_bpftrace_maps(runtime: Runtime) -> None:
    job_id = await started_job(runtime, ",".join(BPF_RUNS), BPF_PROGRAM, 40)
    for host, commands in BPF_RUNS.items():
        for command in commands:
            assert (await fleet_run(runtime, host, command)).summary.ok == 1
    await job_cancel(runtime, job_id)  # bpftrace prints its maps on the way out
    job = runtime.jobs.get(job_id)
    for host, host_job in job.host_jobs.items():
        params = {"job_id": host_job, "wait": 10, "page_bytes": runtime.settings.page_chars}
        status = await runtime.fleet.call(runtime.fleet.host(host), "bpftrace.result", params)
        assert status["state"] != "running" and status["maps"], status
        save(f"bpftrace-maps-{host}.json", status["maps"])


# -- profile: each host's folded kernel stacks, one host busy in the kernel ----

# dd's name (so its comm) while it burns: a ';', a comma, then what looks like one of bpftrace's frame
# lines, which folding must keep in the comm.
BURNER = "dd;x,\n    y+1"
PROFILE_TOP = 25  # stacks each saved answer keeps (the others count in its samples only)


async def test_profile_stacks(runtime: Runtime, tmp_path: Path) -> None:
    """web01 and web02 sample together; then web03 alone, while dd copies /dev/zero to /dev/null."""
    quiet = await _profile(runtime, ["web01", "web02"])
    exe = tmp_path / BURNER
    shutil.copy(shutil.which("dd") or "/bin/dd", exe)
    burner = subprocess.Popen([str(exe), "if=/dev/zero", "of=/dev/null", "bs=64k"], stderr=subprocess.DEVNULL)
    try:
        busy = await _profile(runtime, ["web03"])
    finally:
        burner.kill()
        burner.wait()
    for host, (answer, _raw) in {**quiet, **busy}.items():
        save(f"profile-{host}.json", {key: answer[key] for key in ("hz", "samples", "stacks", "top")})
    save("profile-raw-web03.jsonl", busy["web03"][1])


async def _profile(rt: Runtime, hosts: list[str]) -> dict[str, tuple[dict[str, Any], str]]:
    """Each host's profile.start answer and bpftrace's raw output behind it."""

    async def one(name: str) -> tuple[dict[str, Any], str]:
        host = rt.fleet.host(name)
        params = {"hz": 99, "duration": 2, "top": PROFILE_TOP, "wait": 20}
        answer = await rt.fleet.call(host, "profile.start", params)
        assert answer["state"] == "done" and answer["samples"], answer
        raw = await rt.fleet.call(host, "page", {"output_id": answer["output_id"], "max_bytes": 100000})
        assert raw["next_cursor"] is None, "raw output over one page"
        return answer, raw["text"]

    return dict(zip(hosts, await asyncio.gather(*(one(h) for h in hosts))))


# -- capture: two hosts' flows and fingerprints, with loss between them --------

# The router drops 15% of what db01 sends from :8080; :8081 is clean.
LOSSY = """table inet fault {
  chain forward { type filter hook forward priority 0;
    ip saddr 10.77.2.2 tcp sport 8080 numgen random mod 100 < 15 drop
  }
}"""
# An HTTP server that answers in small chunks with a pause after each: one packet per chunk.
CHUNKED = (
    "import socket, sys, time\n"
    "address, port, count, size, pause = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:])\n"
    "server = socket.create_server((address, port))\n"
    "while True:\n"
    "    conn, _ = server.accept()\n"
    "    conn.recv(4096)\n"
    "    conn.sendall(b'HTTP/1.0 200 OK\\r\\n\\r\\n')\n"
    "    for _ in range(int(count)):\n"
    "        conn.sendall(b'x' * int(size))\n"
    "        time.sleep(pause)\n"
    "    conn.close()\n"
)
LOSSY_PORT, SLOW_PORT = 8080, 8081


async def test_capture_views(lab: NetLab, tmp_path: Path) -> None:  # noqa: F811 - lab is the fixture
    from crashfleet.controller.settings import Settings

    lab.spawn("db01", "python3", "-c", CHUNKED, "10.77.2.2", str(LOSSY_PORT), "60", "500", "0.005")
    lab.spawn("db01", "python3", "-c", CHUNKED, "10.77.2.2", str(SLOW_PORT), "40", "100", "0.1")
    curl = ["curl", "-sf", "-o", "/dev/null", "--retry", "20", "--retry-connrefused", "--retry-delay", "0"]
    for port in (LOSSY_PORT, SLOW_PORT):  # both are up (these flows end before the captures start)
        assert lab.exec("app01", *curl, f"http://10.77.2.2:{port}/").returncode == 0
    settings = Settings(
        inventory=lab.inventory, ssh_known_hosts=lab.known_hosts, audit_log=tmp_path / "audit.jsonl", host_deadline=30
    )
    rt = Runtime.create(settings, who="recapture")
    lab.nft("router", LOSSY)
    try:
        jobs = await _traffic(rt, lab, curl)
        for job_id in jobs.values():
            await cap.capture_stop(rt, job_id)
        views = {h: await _call(rt, jobs, h, "capture.flows") for h in jobs}
        problems = {h: (await cap.capture_summary(rt, jobs[h])).hosts[h]["problems"] for h in jobs}
        flows = [_from_server(views["db01"], port) for port in (LOSSY_PORT, SLOW_PORT)]
        for host in jobs:
            prints = {f: (await _call(rt, jobs, host, "capture.fingerprints", flow=f))["packets"] for f in flows}
            save(f"capture-{host}.json", {"flows": views[host], "fingerprints": prints, "problems": problems[host]})
    finally:
        lab.nft_clear("router")
        await rt.close()


async def _traffic(rt: Runtime, net: NetLab, curl: list[str]) -> dict[str, str]:
    """db01 captures first: one flow ends before app01 starts, one is under way when it does, one loses packets."""
    jobs = {"db01": await _start(rt, "db01")}
    assert net.exec("app01", *curl, "http://10.77.2.2/index.html").returncode == 0  # before app01's window
    slow = subprocess.Popen(["ip", "netns", "exec", net.ns("app01"), *curl, f"http://10.77.2.2:{SLOW_PORT}/"])
    await asyncio.sleep(1.0)
    jobs["app01"] = await _start(rt, "app01")  # a second or so into the slow flow (4 s)
    assert net.exec("app01", *curl, f"http://10.77.2.2:{LOSSY_PORT}/").returncode == 0
    assert slow.wait(20) == 0
    assert net.exec("app01", *curl, "http://10.77.2.2/index.html").returncode == 0  # inside both windows
    await asyncio.sleep(0.5)
    return jobs


async def _start(rt: Runtime, host: str) -> str:
    result = await cap.capture_start(rt, host, interface="data0", filter="net 10.77.0.0/16", duration=30)
    assert result.job_id, result
    await asyncio.sleep(0.5)  # tcpdump opens the device after start returns
    return result.job_id


def _from_server(view: dict[str, Any], port: int) -> str:
    """The server-to-client direction of the busiest flow to that port."""
    flow = max((f for f in view["flows"] if f["flow"].endswith(f":{port}")), key=lambda f: f["returned"])["flow"]
    proto, _, ends = flow.partition(" ")
    client, _, server = ends.partition(">")
    return f"{proto} {server}>{client}"


async def _call(rt: Runtime, jobs: dict[str, str], host: str, method: str, **params: Any) -> Any:
    job = rt.jobs.get(jobs[host])
    return await rt.fleet.call(rt.fleet.host(host), method, {"job_id": job.host_jobs[host], **params})


# -- dumps: crash's sys and bt on the fixture vmcores --------------------------


@pytest.mark.asyncio(loop_scope="module")
async def test_dumps_sys_and_bt(drt: Any) -> None:  # noqa: F811 - drt is the fixture
    for host, panic in (("web01", "sysrq"), ("web04", "initexit")):
        opened = await d.crash_open(drt, host)
        assert opened.summary.command == "sys" and opened.summary.next_cursor is None, opened.summary
        bt = await d.crash_run(drt, opened.session.session_id, "bt")
        assert bt.ended == "done" and bt.next_cursor is None, bt
        save(f"crash-{panic}-sys.txt", opened.summary.text)
        save(f"crash-{panic}-bt.txt", bt.text)
        await d.session_close(drt, opened.session.session_id)


# -- oops titles: the fixture's serial consoles, and crash's `log -m` of its vmcores --------------


def test_oops_logs(dump_fixture: Any) -> None:  # noqa: F811 - dump_fixture is the fixture
    (DATA / "oops").mkdir(exist_ok=True)
    for panic in ("sysrq", "initexit"):
        shutil.copyfile(dump_fixture.serial(panic), DATA / "oops" / f"serial-{panic}.log")
        log = subprocess.run(
            ["crash", "-s", str(dump_fixture.vmlinux), str(dump_fixture.vmcore(panic))],
            input="log -m\nquit\n",
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        (DATA / "oops" / f"crash-log-{panic}.log").write_text(log.stdout)


def test_oops_captures() -> None:
    """The null_deref crash as kdump and pstore keep it (tests/dumps/crash_kinds.py): makedumpfile's
    dmesg, the console of the crash and of the capture kernel booting after it, and the ramoops
    records the next boot found."""
    kinds = ensure_kinds()
    dmesg, console = kinds.dmesg("null_deref"), kinds.kdump_serial("null_deref")
    assert dmesg is not None and console is not None
    shutil.copyfile(dmesg, DATA / "oops" / "kdump-null_deref.dmesg")
    shutil.copyfile(console, DATA / "oops" / "kdump-null_deref.serial.log")
    for record in sorted(kinds.pstore.glob("dmesg-ramoops-*")):
        shutil.copyfile(record, DATA / "oops" / f"pstore-{record.name}")
