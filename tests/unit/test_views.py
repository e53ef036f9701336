"""The MCP Apps views as served: self-contained pages (one inline script and style, nothing fetched),
scripts that parse (node --check), bound to tools that exist, listed as ui:// resources of the Apps
MIME type. tests/client drives them in a real host."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from mcp import Client

from crashfleet.controller import registry, views
from crashfleet.controller.runtime import Runtime
from crashfleet.controller.server import build_server
from crashfleet.controller.settings import Settings

APP_MIME = "text/html;profile=mcp-app"
NAMES = [view.name for view in views.VIEWS]


@pytest.mark.parametrize("name", NAMES)
def test_a_page_is_self_contained(name: str) -> None:
    page = views.page(name)
    assert page.count("<script>") == 1 and page.count("</script>") == 1 and page.count("<style>") == 1
    assert not re.search(r"\b(src|href|srcset|action)\s*=", page), "a page loads nothing"
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    assert re.search(r"\b(fetch|XMLHttpRequest|WebSocket|EventSource|importScripts|import\()", page) is None
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page and "document.write" not in page


@pytest.mark.parametrize("name", NAMES)
def test_a_page_s_script_parses(name: str, tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: ./dev test installs nodejs")
    script = tmp_path / f"{name}.js"
    script.write_text(views.page(name).split("<script>", 1)[1].split("</script>", 1)[0])
    checked = subprocess.run([node, "--check", str(script)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr


def test_views_are_bound_to_tools_that_exist() -> None:
    tools = {spec.name for spec in registry.discover()}
    bound = {tool for view in views.VIEWS for tool in view.tools}
    assert bound <= tools, bound - tools
    assert views.tool_meta("crash_triage") == {"ui": {"resourceUri": "ui://crashfleet/triage.html"}}
    assert views.tool_meta("fleet_hosts") is None


async def test_tools_name_their_views_and_the_views_are_resources(tmp_path: Path) -> None:
    rt = Runtime.create(Settings(audit_log=tmp_path / "audit.jsonl"))
    try:
        async with Client(build_server(rt), mode="legacy") as client:
            listed = {t.name: t for t in (await client.list_tools()).tools}
            resources = {str(r.uri): r for r in (await client.list_resources()).resources}
            for view in views.VIEWS:
                for tool in view.tools:
                    assert (listed[tool].meta or {}).get("ui", {}).get("resourceUri") == view.uri, tool
                assert resources[view.uri].mime_type == APP_MIME
                read = await client.read_resource(view.uri)
                assert read.contents[0].mime_type == APP_MIME and read.contents[0].text == views.page(view.name)
    finally:
        await rt.close()
