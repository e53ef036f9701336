"""The real MCP SDK client drives `crashfleet serve` over stdio, for each protocol version, on the sshd rig.

One server per protocol version serves the module's tests (module-scoped, parametrized fixture); the
last test of each version closes it and checks that neither the server nor any agent outlives the client.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import mcp.types as types
import pytest
from mcp.client import stdio as mcp_stdio

from crashfleet.agent.commands import CATALOG
from tests.e2e.conftest import (
    MODERN,
    STDIO_VERSIONS,
    TOOLS,
    StdioServer,
    assert_no_agents,
    audit_entries,
    error_text,
    structured,
    wait_for,
)
from tests.helpers import agent_pids, alive, cmdline, descendants
from tests.rig import Rig

pytestmark = pytest.mark.timeout(90)

OUTPUT_ID = re.compile(r"^(web0[12]):[0-9a-f]+$")
GRACE = 10.0  # seconds the server may take to leave after stdin EOF (it takes ~0.3 s)


class ServerSlot:
    """The shared server of one protocol version; started again if a test closed it."""

    def __init__(self, version: str, rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.version = version
        self.rig = rig
        self.tmp_path_factory = tmp_path_factory
        self.server: StdioServer | None = None

    def get(self) -> StdioServer:
        if self.server is None or self.server.closed:
            home = self.tmp_path_factory.mktemp(f"stdio-{self.version}")
            self.server = StdioServer(self.version, self.rig, home)
        return self.server

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


@pytest.fixture(scope="module", params=STDIO_VERSIONS)
def slot(request: pytest.FixtureRequest, rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerSlot]:
    shared = ServerSlot(request.param, rig, tmp_path_factory)
    yield shared
    shared.close()


@pytest.fixture
def server(slot: ServerSlot) -> StdioServer:
    return slot.get()


def test_negotiated_version(server: StdioServer) -> None:
    asked = server.version
    assert server.protocol_version == asked, f"asked for {asked}, session runs {server.protocol_version}"
    result = server.call("fleet_hosts", {"pattern": "web01"})
    structured(result)
    if asked == MODERN:
        # No handshake in this era: the proof is in the server's answers, which only 2026 results carry.
        assert server.answered is None and server.session.discover_result is not None
        assert "result_type" in result.model_fields_set, "server did not answer in the 2026-07-28 shape"
        assert (result.meta or {}).get("io.modelcontextprotocol/serverInfo", {}).get("name") == "crashfleet", (
            f"2026-07-28 result without serverInfo meta: {result.meta}"
        )
    else:
        assert server.answered == asked, f"initialize asked {asked}, the server answered {server.answered}"
        assert server.session.initialize_result is not None and server.session.discover_result is None
        assert "result_type" not in result.model_fields_set, "a handshake-era result carries resultType"
        assert server.session.initialize_result.server_info.name == "crashfleet"


def test_tools_listed_with_annotations_and_output_schema(server: StdioServer) -> None:
    tools = {tool.name: tool for tool in server.list_tools().tools}
    assert set(tools) == TOOLS, f"missing {TOOLS - set(tools)}, unexpected {set(tools) - TOOLS}"
    for name, tool in tools.items():
        assert tool.annotations is not None, f"{name}: no annotations"
        assert tool.annotations.read_only_hint is not None, f"{name}: annotations without readOnlyHint"
        assert tool.output_schema and tool.output_schema.get("properties"), f"{name}: no outputSchema"
        assert tool.description, f"{name}: no description"
    hosts_hints, cancel_hints = tools["fleet_hosts"].annotations, tools["job_cancel"].annotations
    assert hosts_hints is not None and hosts_hints.read_only_hint is True
    assert cancel_hints is not None and cancel_hints.read_only_hint is False and cancel_hints.destructive_hint


def test_bpftrace_run_merges_maps_over_mcp(server: StdioServer) -> None:
    if server.version != MODERN:
        pytest.skip("one protocol era is enough for this tool")
    events: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total, message))

    result = server.call(
        "bpftrace_run",
        {"pattern": "web01:web02", "duration": 3, "program": "tracepoint:sched:sched_switch { @switches = count(); }"},
        progress=on_progress,
    )
    data = structured(result)
    wait_for(lambda: len([e for e in events if e[0] == 2]) == 1, 2.0)
    values = [p for p, _, _ in events]
    assert values == sorted(set(values)) and values[-1] == 2, f"progress must increase to the host count: {events}"
    assert any("tracing" in (m or "") for _, _, m in events), f"no progress while the hosts traced: {events}"
    [switches] = data["maps"]
    assert switches["name"] == "@switches" and switches["hosts"] == "web[01-02]" and switches["value"] > 0
    assert len(switches["per_host"]) == 2
    refused = server.call("bpftrace_run", {"pattern": "web01", "program": 'BEGIN { system("id"); }'})
    assert refused.is_error and "system() is refused" in refused.content[0].text


def test_fleet_hosts_pattern(server: StdioServer) -> None:
    result = server.call("fleet_hosts", {"pattern": "web:!web03"})
    data = structured(result)
    assert data["count"] == 5, data
    assert data["hosts"] == "web[01-02,04-06]", data
    assert [d["name"] for d in data["details"]] == ["web01", "web02", "web04", "web05", "web06"]
    first = result.content[0]
    assert isinstance(first, types.TextContent), first
    text = json.loads(first.text)  # the text is the same answer, as compact JSON
    assert (text["count"], text["hosts"]) == (5, "web[01-02,04-06]")


def test_fleet_check_groups_and_reports_progress(server: StdioServer) -> None:
    events: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total, message))

    data = structured(server.call("fleet_check", {"pattern": "web01:web02:web03"}, progress=on_progress))
    assert data["summary"]["total"] == 3 and data["summary"]["ok"] == 3, data["summary"]
    assert len(data["groups"]) == 1, f"identical hosts not grouped: {data['groups']}"
    group = data["groups"][0]
    assert (group["hosts"], group["count"], group["status"]) == ("web[01-03]", 3, "ok"), group
    assert group["data"]["agent"]["build"], group["data"]
    assert not data["errors"], data["errors"]
    wait_for(lambda: len(events) >= 3, 2.0)  # notifications precede the result; allow dispatch lag
    assert len(events) == 3, f"expected one progress notification per host, got {events}"
    progress = [p for p, _, _ in events]
    assert progress == sorted(set(progress)), f"progress must increase: {events}"
    assert all(total == 3 for _, total, _ in events), events
    assert events[-1][0] == events[-1][1], f"last progress is not the total: {events}"
    named = sorted(h for _, _, message in events for h in ("web01", "web02", "web03") if h in (message or ""))
    assert named == ["web01", "web02", "web03"], f"each host's progress message should name it: {events}"


def test_a_running_jobs_progress_reaches_mcp_progress(server: StdioServer) -> None:
    """The agents' job.progress (sent while a job writes output) comes through between hosts finishing."""
    events: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total, message))

    data = structured(
        server.call("fleet_run", {"command": "vmstat", "pattern": "web01:web02", "duration": 5}, progress=on_progress)
    )
    assert data["summary"]["ok"] == 2, data["summary"]
    wait_for(lambda: len([e for e in events if float(e[0]).is_integer()]) >= 2, 2.0)
    running = [e for e in events if "running" in (e[2] or "")]
    assert running, f"no job progress while vmstat ran: {events}"
    assert all(0 < p < 2 and not float(p).is_integer() and "KB so far" in (m or "") for p, _, m in running), running
    values = [p for p, _, _ in events]
    assert values == sorted(set(values)), f"progress must increase: {events}"
    assert events[-1][0] == 2, events


def test_fleet_run_then_page_and_search(server: StdioServer) -> None:
    data = structured(server.call("fleet_run", {"command": "meminfo", "pattern": "web01:web02"}))
    assert data["summary"]["ok"] == 2, data["summary"]
    assert data.get("job_id") is None, "meminfo is instant: no job should be left"
    assert sum(g["count"] for g in data["groups"]) == 2, data["groups"]
    ids: list[str] = []
    for group in data["groups"]:
        assert group["status"] == "ok", group
        assert "MemTotal" in (group["output"] or ""), f"meminfo output without MemTotal: {group['output']!r:.200}"
        assert len(group["output_ids"]) == group["count"], group
        for output_id in group["output_ids"]:
            assert OUTPUT_ID.match(output_id), f"output id {output_id!r} is not HOST:HEX"
        ids += group["output_ids"]
    assert sorted(OUTPUT_ID.match(i).group(1) for i in ids) == ["web01", "web02"]  # type: ignore[union-attr]

    first = data["groups"][0]["output_ids"][0]
    page = structured(server.call("output_page", {"output_id": first}))
    assert page["text"].startswith("MemTotal"), f"page text: {page['text'][:200]!r}"
    assert page["output_id"] == first and page["host"] == first.split(":")[0]
    assert page["start_line"] == 1 and page["total_lines"] >= page["end_line"] >= 2, page

    found = structured(server.call("output_search", {"output_id": first, "pattern": "^Mem"}))
    assert len(found["matches"]) >= 2, found  # MemTotal, MemFree, MemAvailable
    assert all(m["text"].startswith("Mem") for m in found["matches"]), found["matches"]
    assert found["matches"][0]["line"] == 1 and found["matches"][0]["text"].startswith("MemTotal")


@pytest.mark.parametrize(
    ("tool", "arguments", "expect"),
    [
        pytest.param("fleet_check", {"pattern": "nosuchgroup"}, [r"nosuchgroup", r"\bweb\b"], id="unknown-group"),
        pytest.param(
            "output_page",
            {"output_id": "web01:ffffffffff"},
            [r"ffffffffff", r"(?i)unknown.output|no output"],
            id="unknown-output",
        ),
        pytest.param(
            "fleet_run",
            {"command": "rm"},
            [r"'rm'", *(re.escape(name) for name in sorted(CATALOG))],
            id="unknown-command",
        ),
    ],
)
def test_errors_are_actionable_tool_errors(
    server: StdioServer, tool: str, arguments: dict[str, Any], expect: list[str]
) -> None:
    result = server.call(tool, arguments)
    text = error_text(result)
    assert result.structured_content is None, result.structured_content
    missing = [pattern for pattern in expect if not re.search(pattern, text)]
    assert not missing, f"{tool}{arguments}: error text {text!r} lacks {missing}"
    assert "Traceback" not in text and "internal error" not in text, text


def test_client_exit_stops_server_and_agents(server: StdioServer, rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Last of each version: with agents up and a sampler running, the client exits; the server exits on
    stdin EOF by itself, and neither an agent nor the sampler it ran outlives it."""
    data = structured(server.call("fleet_check", {"pattern": "web"}))
    assert data["summary"]["ok"] == len(rig.hosts), data
    # A sampler still running when the client leaves: the agent must stop it too. (Normally web01 is
    # "running" with a job_id; a loaded machine can make it miss fleet_run's 1 s slack and report
    # "timeout", and the sampler runs all the same, which is all this test needs.)
    job = structured(server.call("fleet_run", {"command": "vmstat", "pattern": "web01", "duration": 120, "timeout": 3}))
    assert job["summary"]["running"] + job["summary"]["timeout"] == 1, f"vmstat is not running: {job}"
    agents = agent_pids(str(rig.base))
    assert len(agents) >= len(rig.hosts), f"expected an agent per host, found {agents}"
    wait_for(lambda: descendants(agents), 5.0)
    work = descendants(agents)
    assert work, "the vmstat sampler is not running under the agent"
    pid = server.server_pid
    assert alive(pid)

    # The SDK closes stdin, waits PROCESS_TERMINATION_TIMEOUT (2 s), then SIGTERMs the group. Give it a
    # longer grace so that a loaded machine cannot turn a slow clean exit into a kill: what is checked is
    # that the server leaves on EOF by itself (closing its links), not that it is killed.
    monkeypatch.setattr(mcp_stdio, "PROCESS_TERMINATION_TIMEOUT", GRACE)
    took = server.close()

    assert not alive(pid), f"server {pid} still alive after the client exited"
    assert took < GRACE, (
        f"the server did not exit within {GRACE:g} s of stdin EOF and had to be signalled. Stderr: {server.stderr()}"
    )
    assert_no_agents(rig)
    assert wait_for(lambda: not [p for p in work if alive(p)], 5.0), (
        f"processes the agents ran outlived them: {[(p, cmdline(p)) for p in work if alive(p)]}"
    )
    assert "Traceback" not in server.stderr(), server.stderr()
    entries = audit_entries(server.home)
    assert entries and all(e["who"].startswith("stdio:") for e in entries), entries[:3]
    assert {e["host"] for e in entries} >= {h.name for h in rig.hosts}, "audit log misses hosts that were called"
