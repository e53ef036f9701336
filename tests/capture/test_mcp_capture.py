"""The capture tools through a real MCP client over stdio, on the namespace lab."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import MODERN, StdioServer, structured, wait_for
from tests.rig import Rig

from .conftest import tcpdumps
from .netlab import HERE, NetLab

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def server(rig: Rig, lab: NetLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioServer]:
    started = StdioServer(
        MODERN,
        rig,
        tmp_path_factory.mktemp("mcp-capture"),
        CRASHFLEET_INVENTORY=str(lab.inventory),
        CRASHFLEET_SSH_KNOWN_HOSTS=str(lab.known_hosts),
    )
    yield started
    started.close()


def listening(server: StdioServer, job_id: str) -> bool:
    """Both hosts' tcpdump have the device open (or ended): traffic from now on is captured."""
    status = structured(server.call("capture_status", {"job_id": job_id}))
    return all(g["data"].get("listening") or g["status"] != "running" for g in status["groups"])


def test_capture_on_two_hosts_over_mcp(server: StdioServer, lab: NetLab) -> None:
    interfaces = structured(server.call("capture_interfaces", {"pattern": "app01"}))
    names = [i["name"] for i in interfaces["groups"][0]["data"]["interfaces"]]
    assert "data0" in names, interfaces

    start = structured(
        server.call(
            "capture_start",
            {"pattern": "app01:db01", "mode": "host", "target": "10.77.2.2", "duration": 5, "interface": "data0"},
        )
    )
    job_id = start["job_id"]
    assert job_id and start["summary"]["running"] == 2, start
    assert wait_for(lambda: listening(server, job_id), 30), "tcpdump never said it was listening"
    deadline = time.monotonic() + 60
    while structured(server.call("capture_status", {"job_id": job_id}))["summary"]["running"]:
        # Traffic all along the window: tcpdump opens the device a moment after start returns.
        assert lab.exec("app01", "curl", "-sf", "-o", "/dev/null", "http://10.77.2.2/index.html").returncode == 0
        assert (
            lab.exec(
                "app01", sys.executable, str(HERE / "dnsserver.py"), "query", "10.77.2.2", "nope.test"
            ).stdout.strip()
            == "NXDOMAIN"
        )
        assert time.monotonic() < deadline, "the capture outlived its duration"
        time.sleep(0.2)
    summary = structured(server.call("capture_summary", {"job_id": job_id}))
    app01 = summary["hosts"]["app01"]
    assert app01.get("http", {}).get("requests", 0) >= 1 and "dns_nxdomain" in {p["kind"] for p in app01["problems"]}, (
        app01
    )
    assert len(server.call("capture_summary", {"job_id": job_id}).content[0].text) < 12000  # ~1,500 tokens a host

    packets = structured(server.call("capture_packets", {"job_id": job_id, "host": "db01", "filter": "port 80"}))
    assert "10.77.2.2.80" in packets["text"] or "10.77.2.2:80" in packets["text"], packets["text"][:500]

    unknown = structured(server.call("capture_start", {"pattern": "app01", "interface": "nosuch0", "duration": 2}))
    [error] = unknown["errors"]  # a per-host failure, like every fan-out: other hosts could have it
    assert "nosuch0" in error["message"] and "data0" in error["hint"], error  # names the real interfaces
    assert not tcpdumps(lab)
