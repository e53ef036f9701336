"""Playbook prompts and outputs-as-resources through the real SDK client, in every protocol era, on the rig."""

from __future__ import annotations

import re
from collections.abc import Iterator

import mcp.types as types
import pytest
from mcp import MCPError

from tests.e2e.conftest import HANDSHAKE_PINNED, STDIO_VERSIONS, StdioServer, assert_no_agents, structured
from tests.rig import Rig

pytestmark = pytest.mark.timeout(120)

PROMPTS = {
    "kernel_panics": ["pattern"],
    "latency": ["pattern", "duration"],
    "packet_loss": ["a", "b", "duration"],
    "host_health": ["pattern"],
}
EXPERT_ORDER = {  # the order the playbook must name its tools in
    "kernel_panics": ["dumps_list", "crash_triage", "crash_open", "crash_run", "analysis_run", "session_close"],
    "latency": ["bpftrace_tools", "bpftrace_run", "fleet_run"],
    "packet_loss": ["capture_interfaces", "capture_start", "capture_summary", "capture_packets"],
    "host_health": ["fleet_check", "fleet_run", "output_search"],
}
FOOTER = re.compile(r"\n\[crashfleet: lines \d+-\d+ of \d+; next page: \S+\]\n$")


@pytest.fixture(scope="module", params=STDIO_VERSIONS)
def server(request: pytest.FixtureRequest, rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StdioServer]:
    """A server with the smallest page budget (500 tokens), so outputs take several resource pages."""
    home = tmp_path_factory.mktemp(f"prompts-{request.param}")
    started = StdioServer(request.param, rig, home, CRASHFLEET_PAGE_TOKENS="500")
    yield started
    started.close()
    assert_no_agents(rig)
    assert "Traceback" not in started.stderr(), started.stderr()


def prompt_text(result: types.GetPromptResult) -> str:
    assert result.messages, "a prompt without messages"
    content = result.messages[0].content
    assert isinstance(content, types.TextContent), content
    return content.text


def test_prompts_listed_with_titles_and_arguments(server: StdioServer) -> None:
    listed = {p.name: p for p in server.run(server.session.list_prompts).prompts}
    assert set(listed) == set(PROMPTS), listed.keys()
    for name, prompt in listed.items():
        assert prompt.title and prompt.description, f"{name}: no title or description"
        assert [a.name for a in prompt.arguments or []] == PROMPTS[name], prompt.arguments
        if server.version != HANDSHAKE_PINNED:  # icons exist from 2025-11-25 on
            assert prompt.icons and prompt.icons[0].src.startswith("data:image/png;base64,"), prompt.icons
    assert listed["packet_loss"].title == "Packets lost between A and B"
    assert [a.required for a in listed["latency"].arguments or []] == [True, False]


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_prompt_names_tools_in_expert_order(server: StdioServer, name: str) -> None:
    args = {"a": "web01", "b": "web02"} if name == "packet_loss" else {"pattern": "web:!web03"}
    text = prompt_text(server.run(lambda: server.session.get_prompt(name, args)))
    positions = [text.find(f"`{tool}`") for tool in EXPERT_ORDER[name]]
    assert -1 not in positions, f"{name} does not name {EXPERT_ORDER[name]}: {text}"
    assert positions == sorted(positions), f"{name} names its tools out of order: {text}"
    for value in args.values():
        assert value in text, f"{name}: argument {value!r} not used in {text}"


def test_prompt_arguments_validated(server: StdioServer) -> None:
    with pytest.raises(MCPError) as unknown:
        server.run(lambda: server.session.get_prompt("latency", {"pattern": "web", "hosts": "x"}))
    assert "hosts" in str(unknown.value) and "valid arguments: pattern, duration" in str(unknown.value)
    with pytest.raises(MCPError) as missing:
        server.run(lambda: server.session.get_prompt("packet_loss", {"a": "web01"}))
    assert "needs argument(s) b" in str(missing.value), missing.value
    with pytest.raises(MCPError) as no_such:
        server.run(lambda: server.session.get_prompt("disk_full", {}))
    assert "kernel_panics" in str(no_such.value), no_such.value


def test_tools_have_titles_and_icons(server: StdioServer) -> None:
    for tool in server.list_tools().tools:
        assert tool.title, f"{tool.name}: no title"
        if server.version != HANDSHAKE_PINNED:
            assert tool.icons, f"{tool.name}: no icons"


def test_outputs_are_linked_listed_and_paged(server: StdioServer) -> None:
    result = server.call("fleet_run", {"command": "ps", "pattern": "web01"})
    data = structured(result)
    [group] = data["groups"]
    links = [c for c in result.content if isinstance(c, types.ResourceLink)]
    assert [link.uri for link in links] == [f"crashfleet://web01/output/{group['output_ids'][0].split(':')[1]}"]
    listed = [r.uri for r in server.run(server.session.list_resources).resources]
    assert links[0].uri in listed, f"{links[0].uri} not in resources/list: {listed}"
    templates = server.run(server.session.list_resource_templates).resource_templates
    assert [t.uri_template for t in templates] == ["crashfleet://{host}/output/{output_id}{?cursor}"]

    pages, uri = [], str(links[0].uri)
    while uri:
        read = server.run(lambda uri=uri: server.session.read_resource(uri))
        [content] = read.contents
        assert isinstance(content, types.TextResourceContents) and content.mime_type == "text/plain"
        meta = content.meta or {}
        assert len(content.text) <= 500 * 4 + 200, f"a page of {len(content.text)} chars is over the budget"
        pages.append(FOOTER.sub("", content.text) if meta.get("next_uri") else content.text)
        uri = meta.get("next_uri") or ""
    assert len(pages) > 1, "ps on the rig should take more than one page of 2,000 characters"
    lines = "".join(pages).splitlines()
    assert len(lines) == meta["total_lines"], (len(lines), meta)
    assert lines[0].split()[:3] == ["PID", "PPID", "USER"], lines[0]


def test_unknown_resources_get_clear_errors(server: StdioServer) -> None:
    for uri, expected in [
        ("crashfleet://web01/output/0123456789abcdef", "cannot read"),
        ("crashfleet://nosuchhost/output/abc", "no host 'nosuchhost'"),
        ("file:///etc/passwd", "crashfleet serves crashfleet://HOST/output/ID"),
    ]:
        with pytest.raises(MCPError) as failed:
            server.run(lambda uri=uri: server.session.read_resource(uri))
        assert expected in str(failed.value), f"{uri}: {failed.value}"
