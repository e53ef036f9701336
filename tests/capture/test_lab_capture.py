"""Captures over SSH in network namespaces, with real traffic and nftables faults."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

from crashfleet.controller.tools import capture as cap

from .conftest import tcpdumps, uid_of
from .netlab import HERE, NetLab

pytestmark = pytest.mark.ssh
DNS = [sys.executable, str(HERE / "dnsserver.py"), "query"]


async def finished(rt: Any, job_id: str, timeout: float = 60) -> Any:
    for _ in range(int(timeout * 5)):
        status = await cap.capture_status(rt, job_id)
        if not status.summary.running:
            return status
        await asyncio.sleep(0.2)
    raise AssertionError(f"capture {job_id} still running after {timeout} s")


async def started(rt: Any, pattern: str, **kw: Any) -> str:
    result = await cap.capture_start(rt, pattern, interface="data0", **kw)
    assert result.job_id, result
    assert result.summary.running == result.summary.total, result
    await asyncio.sleep(0.5)  # tcpdump opens the device after start returns
    return result.job_id


def kinds(summary: dict[str, Any]) -> set[str]:
    return {p["kind"] for p in summary["problems"]}


async def test_interfaces_show_addresses_and_default_route(lab_rt: Any) -> None:
    result = await cap.capture_interfaces(lab_rt, "app01")
    interfaces = {i["name"]: i for i in result.groups[0].data["interfaces"]}
    assert interfaces["data0"]["default_route"] and "10.77.1.2/24" in interfaces["data0"]["addresses"]
    assert not interfaces["mgmt0"]["default_route"] and interfaces["lo"]["state"] in ("unknown", "up")


async def test_clean_traffic_reports_no_problem_and_stops_at_duration(lab_rt: Any, lab: NetLab) -> None:
    job_id = await started(lab_rt, "app01", mode="host", target="10.77.2.2", duration=3)
    pids = tcpdumps(lab)
    assert pids and all(uid_of(pid) != 0 for pid in pids), "tcpdump must have dropped root"
    for _ in range(3):
        assert lab.exec("app01", "curl", "-sf", "-o", "/dev/null", "http://10.77.2.2/index.html").returncode == 0
    assert lab.exec("app01", *DNS, "10.77.2.2", "good.test").stdout.strip() == "NOERROR"
    status = await finished(lab_rt, job_id)
    assert status.groups[0].data.get("stop_reason") == "duration reached", status.groups[0].data
    summary = (await cap.capture_summary(lab_rt, job_id)).hosts["app01"]
    assert summary["problems"] == [], summary["problems"]
    assert summary["http"]["requests"] == 3 and summary["http"]["status"] == {"2xx": 3}
    assert "GET 10.77.2.2/index.html 200 x3" in summary["http"]["top"]
    assert summary["dns"]["rcodes"] == {"NOERROR": 1}
    assert summary["tcp"]["ended"] == {"closed": 3}
    assert not tcpdumps(lab)


FAULTS_DB = """table inet fault {
  chain input { type filter hook input priority 0;
    tcp dport 8081 reject with tcp reset
    tcp dport 8082 drop
  }
}"""
FAULTS_ROUTER = """table inet fault {
  chain forward { type filter hook forward priority 0;
    ip saddr 10.77.2.2 tcp sport 80 numgen random mod 100 < 5 drop
  }
}"""


@pytest.fixture(scope="module")
def faults(lab: NetLab) -> Any:
    """One two-host capture over every fault at once; the summary is shared by the tests below."""

    async def scenario() -> Any:
        from crashfleet.controller.runtime import Runtime
        from crashfleet.controller.settings import Settings

        rt = Runtime.create(
            Settings(
                inventory=lab.inventory,
                ssh_known_hosts=lab.known_hosts,
                audit_log=lab.base / "audit.jsonl",
                host_deadline=30,
            ),
            who="pytest",
        )
        try:
            job_id = await started(rt, "lab", mode="diagnosis", filter="net 10.77.0.0/16", duration=7)
            syn = subprocess.Popen(
                ["ip", "netns", "exec", lab.ns("app01"), "curl", "-s", "--max-time", "4", "http://10.77.2.2:8082/"],
                stdout=subprocess.DEVNULL,
            )
            outcome = {
                "silent": lab.exec("app01", *DNS, "10.77.2.3", "good.test").stdout.strip(),
                "nx": lab.exec("app01", *DNS, "10.77.2.2", "nosuch.test").stdout.strip(),
                "reset": lab.exec("app01", "curl", "-s", "http://10.77.2.2:8081/").returncode,
                "download": lab.exec(
                    "app01", "curl", "-sf", "-o", "/dev/null", "--max-time", "6", "http://10.77.2.2/big.bin"
                ).returncode,
            }
            syn.wait(10)
            await finished(rt, job_id)
            return outcome, await cap.capture_summary(rt, job_id), job_id, rt
        except BaseException:
            await rt.close()
            raise

    lab.nft("db01", FAULTS_DB)
    lab.nft("router", FAULTS_ROUTER)
    loop = asyncio.new_event_loop()
    try:
        outcome, summary, job_id, rt = loop.run_until_complete(scenario())
        yield outcome, summary, job_id, rt, loop
        loop.run_until_complete(rt.close())
    finally:
        lab.nft_clear("db01")
        lab.nft_clear("router")
        loop.close()


def test_the_faults_really_happened(faults: Any) -> None:
    outcome = faults[0]
    assert outcome == {"silent": "timeout", "nx": "NXDOMAIN", "reset": 7, "download": outcome["download"]}, outcome
    assert outcome["download"] in (0, 28)


def test_random_drops_show_as_retransmissions(faults: Any) -> None:
    app = faults[1].hosts["app01"]
    retrans = [p for p in app["problems"] if p["kind"] in ("retransmissions", "segments_missing")]
    assert retrans and retrans[0]["packets"], app["problems"]
    assert "10.77.2.2:80" in " ".join(p["text"] for p in retrans)


def test_reject_shows_as_resets(faults: Any) -> None:
    app = faults[1].hosts["app01"]
    resets = [p for p in app["problems"] if p["kind"] == "resets"]
    assert resets and "10.77.2.2:8081" in resets[0]["text"] and "refused" in resets[0]["text"]


def test_dropped_syns_show_as_unanswered(faults: Any) -> None:
    app = faults[1].hosts["app01"]
    syns = [p for p in app["problems"] if p["kind"] == "syn_unanswered"]
    assert syns and "10.77.2.2:8082" in syns[0]["text"] and syns[0]["severity"] == "high"


def test_dns_nxdomain_and_silent_server(faults: Any) -> None:
    app = faults[1].hosts["app01"]
    assert {"dns_nxdomain", "dns_unanswered"} <= {p["kind"] for p in app["problems"]}, app["problems"]
    assert "nosuch.test" in app["dns"]["nxdomain_names"][0]
    assert "10.77.2.3" in app["dns"]["unanswered_names"][0]


def test_two_hosts_find_the_loss_between_them(faults: Any) -> None:
    summary = faults[1]
    lost = [x for x in summary.lost_between_hosts if x["from"] == "db01" and x["to"] == "app01"]
    assert lost and lost[0]["lost"] > 0 and lost[0]["packets"], summary.lost_between_hosts
    assert "10.77.2.2:80>" in lost[0]["flow"]
    assert not [x for x in summary.lost_between_hosts if x["from"] == "app01"], summary.lost_between_hosts
    top = summary.problems[0]
    assert top["kind"] == "lost_between_hosts" and "lost between db01 and app01" in top["text"]


def test_summary_stays_small(faults: Any) -> None:
    summary = faults[1]
    for host, data in summary.hosts.items():
        assert data["size_tokens"] <= 1500, (host, data["size_tokens"])


def test_packets_drill_down_pages_header_lines(faults: Any) -> None:
    _, summary, job_id, rt, loop = faults
    cid = summary.hosts["app01"]["problems"][0].get("conversations", ["c1"])[0]
    page = loop.run_until_complete(cap.capture_packets(rt, job_id, "app01", filter=cid))
    assert page.total_lines > 0 and all(f" {cid}" in line for line in page.text.splitlines())
    dns = loop.run_until_complete(cap.capture_packets(rt, job_id, "app01", filter="udp port 53"))
    assert "10.77.2.3:53" in dns.text and "good.test" not in dns.text  # headers only, never payload


async def test_ring_caps_disk_use(lab_rt: Any, lab: NetLab) -> None:
    job_id = await started(lab_rt, "app01", mode="port", target="80", duration=20, snaplen=65535, ring_bytes=4_000_000)
    for _ in range(2):
        lab.exec("app01", "curl", "-sf", "-o", "/dev/null", "http://10.77.2.2/big.bin")
    status = await cap.capture_stop(lab_rt, job_id)
    data = status.groups[0].data
    assert data["files"] == 4 and data["disk_bytes"] <= 4 * (1_000_000 + 65535 + 16), data
    summary = (await cap.capture_summary(lab_rt, job_id)).hosts["app01"]
    assert summary["bytes"] > 0 and summary["packets"] > 0
    assert not tcpdumps(lab)


async def test_cancel_and_dropped_connection_leave_no_tcpdump(lab_rt: Any, lab: NetLab) -> None:
    from crashfleet.controller.tools.jobs import job_cancel

    job_id = await started(lab_rt, "app01", duration=120)
    assert tcpdumps(lab)
    await job_cancel(lab_rt, job_id)
    assert not tcpdumps(lab)
    await started(lab_rt, "lab", duration=120)
    assert len(tcpdumps(lab)) == 2
    await lab_rt.fleet.close()  # the SSH connections drop: each agent stops its captures
    for _ in range(100):
        if not tcpdumps(lab):
            break
        await asyncio.sleep(0.1)
    assert not tcpdumps(lab)


async def test_bad_input_is_explained_and_leaves_nothing(lab_rt: Any, lab: NetLab) -> None:
    cases = [
        ({"interface": "eth9"}, "no interface 'eth9'", "data0"),
        ({"interface": "data0", "filter": "tcp prot 80"}, "does not compile", "syntax error"),
        ({"interface": "data0", "duration": 900}, "over this host's cap", "600"),
        ({"interface": "data0", "mode": "port", "target": "http"}, "port must be a number", ""),
    ]
    for params, message, detail in cases:
        result = await cap.capture_start(lab_rt, "app01", **{"interface": "data0", **params})
        assert result.job_id is None and result.summary.failed == 1
        error = result.errors[0]
        assert message in error.message and detail in error.message + (error.hint or ""), error
    assert not tcpdumps(lab)
