"""MCP Apps views in a real host: headless Chromium runs a host page built on the official host bridge
(AppBridge, @modelcontextprotocol/ext-apps), which reads each tool's ui:// view from a real `crashfleet
serve` on the dump fleet, frames it sandboxed with the tool's real answer, and relays the view's tool
calls. Each view is driven (bars hovered, the flame graph zoomed, triage's button clicked), a
screenshot kept, and the page must log no error and fetch nothing."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.client.conftest import Host, hosting
from tests.dumps.conftest import DumpFleet
from tests.e2e.conftest import LEGACY, StdioServer
from tests.rig import Rig

pytestmark = pytest.mark.timeout(600)

ARTIFACTS = Path(os.environ.get("CRASHFLEET_TEST_ARTIFACTS", "/tmp/crashfleet-test-artifacts")) / "views"
HIST = "tracepoint:sched:sched_switch { @slice = hist(nsecs % 100000); @switches = count(); }"
APP_MIME = "text/html;profile=mcp-app"
SIZED = """(() => { const sizes = window.__events.filter(e => e.size && e.size.height);
  const frame = document.getElementById('view');
  return sizes.length > 0 && frame.style.height === sizes[sizes.length - 1].size.height + 'px'; })()"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nobody listens there once the socket is closed


@pytest.fixture(scope="module")
def inventory(dump_fleet: DumpFleet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dump fleet plus a host that is down (nothing listens on its port)."""
    doc = yaml.safe_load(dump_fleet.inventory.read_text())
    doc["all"]["children"]["down"] = {"hosts": {"down01": {"ansible_host": "127.0.0.1", "ansible_port": closed_port()}}}
    path = tmp_path_factory.mktemp("views") / "inventory.yml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture(scope="module")
def server(rig: Rig, inventory: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioServer]:
    started = StdioServer(
        LEGACY,
        rig,
        tmp_path_factory.mktemp("views"),
        CRASHFLEET_INVENTORY=str(inventory),
        CRASHFLEET_HOST_DEADLINE="120",
    )
    yield started
    started.close()


def shown(host_page: Path, server: StdioServer, tmp_path: Path, scenario: Any) -> Any:
    """Run `scenario(host)` in a fresh browser on the host page; then the page's own checks."""

    async def go() -> Any:
        async with hosting(server, host_page, tmp_path / "profile") as host:
            outcome = await scenario(host)
            assert not host.page.problems(), host.page.problems()
            foreign = [url for url in host.page.requests() if not url.startswith(host_page.parent.as_uri())]
            assert not foreign, f"network requests: {foreign}"
            assert not await host.page.evaluate("window.__pwned"), "a string of the result ran as code"
            return outcome

    return asyncio.run(go())


async def snapshot(host: Host, name: str) -> None:
    """The page as a person sees it, kept as an artifact; a drawn view, not a blank frame."""
    await host.page.until(SIZED, 10)  # the frame has the height the view last asked for
    world = await host.world()
    await host.page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))", world)
    data = await host.page.screenshot(ARTIFACTS / f"{name}.png")
    width, height = struct.unpack(">II", data[16:24])  # the PNG's IHDR
    frame = await host.page.evaluate("document.getElementById('view').getBoundingClientRect().height")
    assert width >= 1100 and height >= 300 and frame >= 200, (name, width, height, frame)
    assert len(data) > 15_000, f"{name}: a {len(data)}-byte screenshot is a blank page"


def test_fleet_view_groups_hosts_and_says_why_hosts_are_down(
    host_page: Path, server: StdioServer, tmp_path: Path
) -> None:
    async def scenario(host: Host) -> dict[str, Any]:
        shown = await host.run("fleet_check", {"pattern": "all"})
        world = await host.world()
        await host.page.until("document.querySelector('table.down') !== null", 60, world)
        drawn = await host.page.evaluate(
            """({
              down: [...document.querySelectorAll('table.down tr')].slice(1).map(r => r.textContent),
              cards: [...document.querySelectorAll('section.card')].map(c => c.textContent),
              kernel: [...document.querySelectorAll('table.facts th')].some(th => th.textContent === 'kernel'),
            })""",
            world,
        )
        await snapshot(host, "fleet")
        return {"shown": shown, **drawn}

    got = shown(host_page, server, tmp_path, scenario)
    assert got["shown"]["uri"] == "ui://crashfleet/fleet.html" and got["shown"]["mimeType"] == APP_MIME, got["shown"]
    assert len(got["down"]) == 1 and "down01" in got["down"][0] and "unreachable" in got["down"][0], got["down"]
    assert got["cards"] and any("web" in c for c in got["cards"]) and got["kernel"], got["cards"]
    assert os.uname().release in " ".join(got["cards"])


def test_histogram_view_draws_buckets_as_bars_with_values_on_hover(
    host_page: Path, server: StdioServer, tmp_path: Path
) -> None:
    async def scenario(host: Host) -> dict[str, Any]:
        await host.run("bpftrace_run", {"pattern": "web01:web02:web03", "program": HIST, "duration": 1})
        world = await host.world()
        await host.page.until("document.querySelectorAll('.chart.fleet .bar').length > 0", 120, world)
        counts = "[...document.querySelectorAll('.chart.fleet .bar')].map(b => Number(b.dataset.count))"
        readout, bars, tallest = None, [], 0
        for _ in range(300):  # the view may draw again as more of the result arrives: hover what is there
            bars = await host.page.evaluate(counts, world)
            tallest = bars.index(max(bars))  # an empty bucket's bar has no height to hover
            await host.page.hover(f".chart.fleet .bar:nth-child({tallest + 1})", world)
            readout = await host.page.evaluate(
                "(document.querySelector('.chart.fleet .readout') || {}).textContent", world
            )
            if readout:
                break
            await asyncio.sleep(0.1)  # polling the page's state, as Page.until does
        await snapshot(host, "histograms")
        return {"bars": bars, "tallest": tallest, "readout": readout}

    got = shown(host_page, server, tmp_path, scenario)
    assert len(got["bars"]) >= 2 and sum(got["bars"]) > 0, got
    tallest = got["bars"][got["tallest"]]
    assert got["readout"].startswith("fleet-wide ") and f"{tallest:,}" in got["readout"], got["readout"]


def test_flame_graph_zooms_on_the_frame_clicked(host_page: Path, server: StdioServer, tmp_path: Path) -> None:
    async def scenario(host: Host) -> dict[str, Any]:
        await host.run("profile_run", {"pattern": "web01:web02", "duration": 2, "hz": 49})
        world = await host.world()
        await host.page.until("document.querySelectorAll('.flame .frame').length > 2", 120, world)
        before = await host.page.evaluate(FRAMES, world)
        picked = await host.page.evaluate(
            """(() => {
              const row = [...document.querySelectorAll('.flame .frame')].filter(f => f.style.top === '18px');
              const widest = row.sort((a, b) => parseFloat(b.style.width) - parseFloat(a.style.width))[0];
              widest.setAttribute('data-picked', '1');
              return {frame: widest.dataset.frame, width: parseFloat(widest.style.width)};
            })()""",
            world,
        )
        await host.page.click("[data-picked]", world)
        zoomed = await host.page.until(
            f"document.querySelector('.flame').dataset.zoom === {picked['frame']!r}", 10, world
        )
        after = await host.page.evaluate(FRAMES, world)
        await snapshot(host, "flamegraph")
        await host.page.click("button.reset", world)
        reset = await host.page.until("document.querySelector('.flame').dataset.zoom === 'all'", 10, world)
        return {"before": before, "after": after, "picked": picked, "zoomed": zoomed, "reset": reset}

    got = shown(host_page, server, tmp_path, scenario)
    picked = [f for f in got["after"] if f["frame"] == got["picked"]["frame"] and not f["path"]]
    assert picked and picked[0]["width"] == 100 and picked[0]["left"] == 0, (got["picked"], picked)
    assert [f for f in got["after"] if f["path"]], "the zoomed frame's ancestors are not shown above it"
    assert got["picked"]["width"] < 100 or len(got["after"]) <= len(got["before"]), got["picked"]
    assert all(int(f["samples"]) > 0 for f in got["before"]), got["before"][:3]


FRAMES = """[...document.querySelectorAll('.flame .frame')].map(f => ({frame: f.dataset.frame,
  samples: f.dataset.samples, width: parseFloat(f.style.width), left: parseFloat(f.style.left),
  path: f.classList.contains('path')}))"""


def test_triage_button_opens_crash_and_shows_bt_through_the_bridge(
    host_page: Path, server: StdioServer, tmp_path: Path
) -> None:
    async def scenario(host: Host) -> dict[str, Any]:
        await host.run("crash_triage", {"pattern": "web01:web04"})
        world = await host.world()
        await host.page.until("document.querySelectorAll('section.card h3').length >= 2", 300, world)
        titles = await host.page.evaluate(
            "[...document.querySelectorAll('section.card h3')].map(h => h.textContent)", world
        )
        card = "section.card:has(button.open-bt)"
        chosen = await host.page.evaluate(f"document.querySelector('{card} select').value", world)
        await host.page.click(f"{card} button.open-bt", world)
        bt = await host.page.until(f"(document.querySelector('{card} pre.bt') || {{}}).textContent", 300, world)
        await snapshot(host, "triage")
        calls = await host.page.evaluate("window.__events.filter(e => e.call).map(e => [e.call, e.arguments])")
        return {"titles": titles, "chosen": chosen, "bt": bt, "calls": calls}

    got = shown(host_page, server, tmp_path, scenario)
    assert any("sysrq" in t for t in got["titles"]) and len(got["titles"]) >= 2, got["titles"]
    names = [name for name, _ in got["calls"]]
    assert names[0] == "crash_open" and names[-1] == "crash_run", got["calls"]  # job_status between, if slow
    assert got["calls"][0][1]["host"] == got["chosen"] and got["calls"][-1][1]["command"] == "bt", got["calls"]
    assert "sysrq_handle_crash" in got["bt"] and "panic" in got["bt"], got["bt"][:2000]


def test_a_view_whose_tool_call_fails_shows_the_error(host_page: Path, server: StdioServer, tmp_path: Path) -> None:
    """The triage button on a dump that is not there (the server's own refusal), and a tool error."""
    answer = server.call("crash_triage", {"pattern": "web05:web06"}, timeout=300)
    result = answer.model_dump(by_alias=True, mode="json", exclude_none=True)
    result["structuredContent"]["groups"] = [
        {"hosts": "web05", "count": 1, "status": "ok", "data": {"title": "BUG: gone in 60 s", "frames": ["gone"]}}
    ]
    result["_meta"] = {"crashfleet/view": {"dumps": {"web05": "/var/crash/no-such-vmcore"}}}

    async def scenario(host: Host) -> dict[str, Any]:
        await host.run("crash_triage", {"pattern": "web05"}, result)
        world = await host.world()
        await host.page.click("button.open-bt", world)
        error = await host.page.until("(document.querySelector('.drill .error') || {}).textContent", 120, world)
        await snapshot(host, "triage-error")
        await host.run("crash_triage", {"pattern": "nosuchgroup"})
        world = await host.world()
        refused = await host.page.until("(document.querySelector('main > .error') || {}).textContent", 60, world)
        return {"error": error, "refused": refused}

    got = shown(host_page, server, tmp_path, scenario)
    assert got["error"].startswith("crash_open failed: ") and "no-such-vmcore" in got["error"], got["error"]
    assert "nosuchgroup" in got["refused"], got["refused"]


# Each would act if a view let it: markup that runs, an image that fetches, bidi controls that
# reorder what is around them (U+202E right-to-left override, U+2066 isolate), a newline.
RAN = 'parent["postMessage"]("pwned","*")'
HOSTILE = {
    "markup": f"<img src=x onerror={RAN}>",
    "script": f"<script>{RAN}</script>",
    "bidi": "web\u202e01bew\u2066x",
    "newline": "two\nlines",
}


def hostile(kind: str) -> str:
    return HOSTILE[kind] + f"-{kind}"


def _fleet(result: dict[str, Any]) -> None:
    content = result["structuredContent"]
    content["groups"][0]["hosts"] = f"{hostile('markup')},{hostile('bidi')}"
    content["groups"][0]["data"]["kernel"] = hostile("script")
    content["errors"] = [{"host": hostile("bidi"), "status": "unreachable", "message": hostile("markup")}]


def _profile(result: dict[str, Any]) -> None:  # comm names are the first frame of a folded stack
    comm = f"{hostile('script')};{hostile('bidi')};{hostile('newline')}"
    result["_meta"] = {
        "crashfleet/view": {"stacks": [{"stack": comm, "samples": 90}, {"stack": "ok;f", "samples": 10}]}
    }
    profile = result["structuredContent"]["profile"]
    profile["outliers"] = [
        {"host": hostile("markup"), "stack": comm, "share": 0.9, "others_share": 0.1, "why": hostile("script")}
    ]


def _triage(result: dict[str, Any]) -> None:  # frames and titles come from a crashed kernel's log
    content = result["structuredContent"]
    content["groups"][0]["data"].update(
        title=hostile("markup"), culprit=hostile("bidi"), frames=[hostile("script"), hostile("bidi"), "panic"]
    )
    content["groups"][0]["hosts"] = hostile("bidi")


def _histograms(result: dict[str, Any]) -> None:
    merged = result["structuredContent"]["maps"][0]
    merged["name"] = hostile("markup")
    merged["outliers"] = [
        {"host": hostile("bidi"), "figure": "p99", "value": 9, "fleet_median": 1, "why": hostile("script")}
    ]
    result["_meta"] = {
        "crashfleet/view": {"outlier_histograms": {merged["name"]: {hostile("bidi"): merged["histogram"]}}}
    }


CASES = {
    "fleet_check": ({"pattern": "web01"}, _fleet),
    "profile_run": ({"pattern": "web01", "duration": 1, "hz": 49}, _profile),
    "crash_triage": ({"pattern": "web01"}, _triage),
    "bpftrace_run": ({"pattern": "web01", "program": HIST, "duration": 1}, _histograms),
}
INSPECT = """({
  text: document.body.textContent,
  elements: [...document.querySelectorAll('img, iframe, object, embed, a, link, video, audio, svg image')].length,
  scripts: document.querySelectorAll('script').length,
})"""


@pytest.mark.parametrize("tool", list(CASES))
def test_hostile_strings_in_a_result_are_shown_as_text(
    tool: str, host_page: Path, server: StdioServer, tmp_path: Path
) -> None:
    args, inject = CASES[tool]
    result = server.call(tool, args, timeout=300).model_dump(by_alias=True, mode="json", exclude_none=True)
    inject(result)

    async def scenario(host: Host) -> dict[str, Any]:
        await host.run(tool, args, result)
        world = await host.world()
        await host.page.until("document.querySelector('main h2') !== null", 60, world)
        await snapshot(host, f"hostile-{tool}")
        return dict(await host.page.evaluate(INSPECT, world))

    got = shown(host_page, server, tmp_path, scenario)
    assert got["elements"] == 0 and got["scripts"] == 1, got
    shown_as = {
        "markup": HOSTILE["markup"],
        "script": HOSTILE["script"],
        "bidi": "web\u27e8U+202E\u27e901bew\u27e8U+2066\u27e9x",
    }
    for kind, text in shown_as.items():
        if hostile(kind) in json.dumps(result) or kind == "bidi":
            assert text in got["text"], f"{kind} not shown as text"
    assert "\u202e" not in got["text"] and "\u2066" not in got["text"], "a bidi control reached the page"
