"""The capture view in the test host (see test_views.py), on a real two-host capture of the namespace lab:
packets dropped between db01 and app01 by the router, a name that does not exist, and a DNS name made of
markup asked over the wire (the agent reads it from the packets); the view ranks the problems, shows the
loss between the hosts, and the name as text."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.capture.conftest import lab  # noqa: F401 - the namespace lab fixture
from tests.capture.netlab import HERE, NetLab
from tests.client.conftest import Host, hosting
from tests.client.test_views import snapshot
from tests.e2e.conftest import LEGACY, StdioServer, structured
from tests.rig import Rig

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(600)]

DNS = [sys.executable, str(HERE / "dnsserver.py"), "query", "10.77.2.2"]
MARKUP_NAME = '<img src=x onerror=parent["postMessage"]("pwned","*")>'  # one DNS label: no dots
DROPS = """table inet fault {
  chain forward { type filter hook forward priority 0;
    ip saddr 10.77.2.2 tcp sport 80 numgen random mod 100 < 5 drop
  }
}"""


@pytest.fixture(scope="module")
def server(rig: Rig, lab: NetLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioServer]:  # noqa: F811
    started = StdioServer(
        LEGACY,
        rig,
        tmp_path_factory.mktemp("capture-view"),
        CRASHFLEET_INVENTORY=str(lab.inventory),
        CRASHFLEET_SSH_KNOWN_HOSTS=str(lab.known_hosts),
    )
    yield started
    started.close()


@pytest.fixture(scope="module")
def job_id(server: StdioServer, lab: NetLab) -> Iterator[str]:  # noqa: F811
    """A 6 s capture on app01 and db01 with drops on the router, a missing name and a markup name."""
    lab.nft("router", DROPS)
    try:
        start = structured(
            server.call(
                "capture_start",
                {"pattern": "app01:db01", "mode": "diagnosis", "filter": "net 10.77.0.0/16", "duration": 6},
            )
        )
        deadline = time.monotonic() + 60
        while structured(server.call("capture_status", {"job_id": start["job_id"]}))["summary"]["running"]:
            lab.exec("app01", *DNS, "nosuch.test")
            lab.exec("app01", *DNS, MARKUP_NAME)
            lab.exec("app01", "curl", "-sf", "-o", "/dev/null", "--max-time", "5", "http://10.77.2.2/big.bin")
            assert time.monotonic() < deadline, "the capture outlived its duration"
        yield start["job_id"]
    finally:
        lab.nft_clear("router")


def test_capture_view_ranks_problems_shows_loss_and_names_as_text(
    host_page: Path, server: StdioServer, job_id: str, tmp_path: Path
) -> None:
    async def scenario(host: Host) -> dict[str, Any]:
        shown = await host.run("capture_summary", {"job_id": job_id})
        world = await host.world()
        await host.page.until("document.querySelectorAll('ol.problems li').length > 0", 120, world)
        drawn = await host.page.evaluate(
            """({
              problems: [...document.querySelectorAll('ol.problems li')].map(li => li.textContent),
              loss: [...document.querySelectorAll('table.loss tr')].slice(1)
                .map(r => [...r.cells].map(c => c.textContent)),
              dns: [...document.querySelectorAll('section.dns li')].map(li => li.textContent),
              images: document.querySelectorAll('img').length,
            })""",
            world,
        )
        await snapshot(host, "capture")
        return {"shown": shown, **drawn}

    async def go() -> dict[str, Any]:
        async with hosting(server, host_page, tmp_path / "profile") as host:
            got = await scenario(host)
            assert not host.page.problems(), host.page.problems()
            assert all(url.startswith(host_page.parent.as_uri()) for url in host.page.requests()), host.page.requests()
            assert not await host.page.evaluate("window.__pwned")
            return got

    got = asyncio.run(go())
    assert got["shown"]["uri"] == "ui://crashfleet/capture.html", got["shown"]
    assert any("lost between db01 and app01" in p for p in got["problems"]), got["problems"]
    assert got["problems"][0].startswith("high"), got["problems"]  # loss between hosts ranks first
    assert any(row[0] == "db01" and row[1] == "app01" and int(row[5].replace(",", "")) > 0 for row in got["loss"]), got
    assert any(MARKUP_NAME in name for name in got["dns"]) and got["images"] == 0, got["dns"]
    assert any("nosuch.test" in name for name in got["dns"]), got["dns"]
