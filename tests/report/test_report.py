"""report_build over MCP on the dump fleet: triage, a bpftrace histogram, an output, ids that do not exist;
the file opened in headless Chromium (no console errors, charts there and sized, a screenshot kept)
and checked by an HTML validator (html-validate, from npm)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from html import escape
from pathlib import Path

import pytest

from tests.bundle.conftest import CACHE, run
from tests.dumps.conftest import DumpFleet
from tests.e2e.conftest import LEGACY, StdioServer, structured
from tests.report.browser import load
from tests.rig import Rig

pytestmark = pytest.mark.timeout(420)

ARTIFACTS = Path(os.environ.get("CRASHFLEET_TEST_ARTIFACTS", "/tmp/crashfleet-test-artifacts")) / "report"
HTML_VALIDATE = "html-validate@9.4.1"
HIST = "tracepoint:sched:sched_switch { @slice = hist(nsecs % 100000); @switches = count(); }"
MEASURE = """JSON.stringify({
  images: [...document.querySelectorAll('figure img')].map(i => ({w: i.getBoundingClientRect().width,
    h: i.getBoundingClientRect().height, natural: i.naturalWidth, done: i.complete, alt: i.alt})),
  headings: [...document.querySelectorAll('h2')].map(h => h.textContent)})"""


@pytest.fixture(scope="module")
def server(rig: Rig, dump_fleet: DumpFleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioServer]:
    started = StdioServer(
        LEGACY,
        rig,
        tmp_path_factory.mktemp("report"),
        CRASHFLEET_INVENTORY=str(dump_fleet.inventory),
        CRASHFLEET_HOST_DEADLINE="120",
    )
    yield started
    started.close()


@pytest.fixture(scope="module")
def report(server: StdioServer) -> dict[str, object]:
    triage = structured(server.call("crash_triage", {"pattern": "web01:web04"}, timeout=300))
    assert triage["groups"], triage
    traced = structured(
        server.call("bpftrace_run", {"pattern": "web01:web02:web03", "program": HIST, "duration": 1}, timeout=120)
    )
    assert {m["name"] for m in traced["maps"]} == {"@slice", "@switches"}, traced["maps"]
    uname = structured(server.call("fleet_run", {"pattern": "web01", "command": "uname"}))
    include = [
        triage["groups"][0]["output_ids"][0],
        traced["groups"][0]["output_ids"][0],
        uname["groups"][0]["output_ids"][0],
        "J999",
        "web01:0123456789abcdef",
    ]
    built = structured(
        server.call("report_build", {"title": "Incident 42: panics and latency", "include": include}, timeout=180)
    )
    return {"built": built, "triage": triage, "uname": uname["groups"][0]["output"]}


def test_report_says_what_it_holds_and_what_is_missing(report: dict[str, object]) -> None:
    built = report["built"]
    assert isinstance(built, dict)
    assert [m["id"] for m in built["missing"]] == ["J999", "web01:0123456789abcdef"], built["missing"]
    assert "unknown job_id" in built["missing"][0]["why"], built["missing"]
    assert "triage group" in built["summary"] and "bpftrace map" in built["summary"], built["summary"]
    assert "output(s)" in built["summary"], built["summary"]
    html = Path(built["path"]).read_text()
    uname = report["uname"]
    assert isinstance(uname, str) and escape(uname.strip()) in html, "the uname output is not in the report"
    assert "<script" not in html and "http://" not in html and "https://" not in html  # nothing to fetch
    triage = report["triage"]
    assert isinstance(triage, dict)
    for frame in triage["groups"][0]["data"]["frames"][:3]:
        assert frame in html, f"culprit frame {frame!r} not in the report"


def test_report_loads_in_chromium_with_sized_charts(report: dict[str, object], tmp_path: Path) -> None:
    built = report["built"]
    assert isinstance(built, dict)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report.png"
    value, problems = asyncio.run(load(Path(built["path"]).as_uri(), tmp_path / "profile", MEASURE, shot))
    assert problems == [], problems
    page = json.loads(value)
    assert {"Fleet facts", "Crash triage", "bpftrace", "Not included", "Timeline (audit log)"} <= set(
        page["headings"]
    ), page["headings"]
    images = page["images"]
    assert len(images) >= 3, images  # @slice's histogram and per-host chart, @switches' per-host chart
    for image in images:
        assert image["done"] and image["natural"] > 0 and image["w"] >= 300 and image["h"] >= 100, image
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000
    shutil.copy(built["path"], ARTIFACTS / "report.html")


def test_report_html_validates(report: dict[str, object], tmp_path: Path) -> None:
    built = report["built"]
    assert isinstance(built, dict)
    prefix = CACHE / "npm"
    binary = prefix / "node_modules" / ".bin" / "html-validate"
    if not binary.exists():
        run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", HTML_VALIDATE], timeout=600)
    config = tmp_path / ".htmlvalidate.json"
    config.write_text(json.dumps({"extends": ["html-validate:standard"]}))
    checked = run([str(binary), "--config", str(config), built["path"]])
    assert checked.returncode == 0


def test_a_report_without_ids_holds_the_whole_session(server: StdioServer, report: dict[str, object]) -> None:
    """ "The report of this incident": everything this server produced, no ids to gather first."""
    built = structured(server.call("report_build", {"title": "Incident 42, all of it"}, timeout=180))
    assert built["missing"] == [], built["missing"]
    for what in ("triage group", "bpftrace map", "output(s)", "audited call"):
        assert what in built["summary"], built["summary"]
    html = Path(built["path"]).read_text()
    assert escape(str(report["uname"]).strip()) in html


async def test_a_report_of_a_session_with_nothing_yet_says_so(tmp_path: Path) -> None:
    from crashfleet.controller.runtime import Runtime
    from crashfleet.controller.settings import Settings
    from crashfleet.controller.tools.report import report_build

    rt = Runtime.create(Settings(audit_log=tmp_path / "audit.jsonl"))
    try:
        built = await report_build(rt, "quiet night")
    finally:
        await rt.close()
    assert "nothing yet" in built.summary and Path(built.path).is_file(), built
