"""The histogram view on a real outlier: three VM hosts (each its own kernel, tests/rig/vmhost.py), one
of them reading /dev/zero a megabyte at a time while the fleet traces vfs_read's sizes with bpftrace
(every host also reads a little, steadily, as any host does: an idle guest may read nothing in 5 s).
The answer names that host, and only it, as the p99 outlier; the view (in the test host, see
test_views.py) draws its own buckets beside the fleet's, its megabyte bar the tallest, on hover."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.client.conftest import Host
from tests.client.test_views import shown, snapshot
from tests.dumps.fixture import Fixture
from tests.e2e.conftest import LEGACY, StdioServer, structured
from tests.rig import Rig
from tests.rig.vmhost import VMHost, fleet, write_inventory

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(900)]

HOSTS = ("vm01", "vm02", "vm03")
LOADED = "vm02"
MEMORY_MB = 512  # bpftrace alone: no drgn or crash in these guests
READS = "kprobe:vfs_read { @size = hist(arg2); }"  # arg2: the count asked for
MEGABYTE = 1 << 20
LOAD = "dd if=/dev/zero of=/dev/null bs=1M"
BASELINE = "sh -c 'while :; do cat /proc/uptime; sleep 0.5; done'"  # cat reads 128 KiB at a time


def started(vm: VMHost, command: str) -> int:
    """`command` in the background on the VM (ended after 10 minutes at most): its pid."""
    done = vm.ssh(f"nohup timeout 600 {command} >/dev/null 2>&1 & echo $!")
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.fixture(scope="module")
def vms(dump_fixture: Fixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, VMHost]]:
    with fleet(dump_fixture, tmp_path_factory.mktemp("vm-outliers"), len(HOSTS), MEMORY_MB) as hosts:
        yield dict(zip(HOSTS, hosts))


@pytest.fixture(scope="module")
def server(rig: Rig, vms: dict[str, VMHost], tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioServer]:
    home = tmp_path_factory.mktemp("vm-outliers-server")
    inventory, known = write_inventory(vms, "vms", home)
    started = StdioServer(
        LEGACY,
        rig,
        home,
        CRASHFLEET_INVENTORY=str(inventory),
        CRASHFLEET_SSH_KNOWN_HOSTS=str(known),
        CRASHFLEET_HOST_DEADLINE="300",
    )
    yield started
    started.close()


@pytest.fixture(scope="module")
def traced(server: StdioServer, vms: dict[str, VMHost]) -> dict[str, Any]:
    """bpftrace_run on the three VMs while LOADED reads a megabyte at a time: the tool's whole result."""
    pids = {name: [started(vm, BASELINE)] for name, vm in vms.items()}
    pids[LOADED].append(started(vms[LOADED], LOAD))
    try:
        args = {"pattern": "vms", "program": READS, "duration": 5}
        result = server.call("bpftrace_run", args, timeout=600)
        job_id = structured(result).get("job_id")
        if job_id:  # a slow guest past the call's budget: the complete answer from its job
            result = server.call("bpftrace_result", {"job_id": job_id, "wait": 120}, timeout=600)
    finally:
        for name, vm in vms.items():
            vm.ssh("kill " + " ".join(map(str, pids[name])))
    answer: dict[str, Any] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    return answer


def test_the_loaded_host_alone_is_the_outlier_with_its_own_buckets(traced: dict[str, Any]) -> None:
    content = traced["structuredContent"]
    assert content["summary"]["ok"] == len(HOSTS), content
    size = next(m for m in content["maps"] if m["name"] == "@size")
    assert [o["host"] for o in size["outliers"]] == [LOADED], (size["outliers"], size["per_host"])
    figures = {f["host"]: f["p99"] for f in size["per_host"]}
    assert figures[LOADED] >= MEGABYTE > max(v for h, v in figures.items() if h != LOADED), figures
    own = traced["_meta"]["crashfleet/view"]["outlier_histograms"]["@size"]
    assert list(own) == [LOADED], list(own)
    tallest = max(own[LOADED], key=lambda b: b["count"])
    assert tallest["min"] == MEGABYTE, own[LOADED]  # the host's own buckets, not the fleet's


def test_the_view_draws_the_outlier_beside_the_fleet(
    traced: dict[str, Any], host_page: Path, server: StdioServer, tmp_path: Path
) -> None:
    own = traced["_meta"]["crashfleet/view"]["outlier_histograms"]["@size"][LOADED]
    chart = f".chart.outlier[data-chart={json.dumps(LOADED)}]"

    async def scenario(host: Host) -> dict[str, Any]:
        await host.run("bpftrace_run", {"pattern": "vms", "program": READS, "duration": 5}, traced)
        world = await host.world()
        await host.page.until(f"document.querySelectorAll('{chart} .bar').length > 0", 60, world)
        bars = await host.page.evaluate(
            f"[...document.querySelectorAll('{chart} .bar')].map(b => Number(b.dataset.count))", world
        )
        tallest = bars.index(max(bars))
        await host.page.hover(f"{chart} .bar:nth-child({tallest + 1})", world)
        await host.page.until(f"document.querySelector('{chart} .readout').textContent !== ''", 30, world)
        drawn = await host.page.evaluate(
            f"""({{
              readout: document.querySelector('{chart} .readout').textContent,
              caption: document.querySelector('{chart} figcaption').textContent,
              charts: [...document.querySelectorAll('.chart')].map(c => c.dataset.chart),
            }})""",
            world,
        )
        await snapshot(host, "histograms-vm-outlier")
        return {"bars": bars, **drawn}

    got = shown(host_page, server, tmp_path, scenario)
    assert got["charts"] == ["fleet-wide", LOADED], got["charts"]
    assert got["bars"] == [b["count"] for b in own], (got["bars"], own)
    top = max(own, key=lambda b: b["count"])
    assert got["readout"].startswith(f"{LOADED} ") and f"{top['count']:,}" in got["readout"], got["readout"]
    assert "p99" in got["caption"] and "fleet median" in got["caption"], got["caption"]
