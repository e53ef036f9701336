"""What the client-side tests share: the official MCP Apps host bridge (npm's @modelcontextprotocol/ext-apps,
bundled once with esbuild into a cache outside the repository), the test host page around it, and a
way to show a tool's view from a real `crashfleet serve` in headless Chromium."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.bundle.conftest import CACHE, run
from tests.client.chrome import Chrome, World, chrome
from tests.dumps.conftest import dump_fixture, dump_fleet  # noqa: F401 - fixtures re-exported
from tests.e2e.conftest import StdioServer, http_servers  # noqa: F401 - http_servers: a fixture re-exported

# Pinned: the host bridge and its peers (it imports @modelcontextprotocol/client, core and zod).
# All run on Node 20 (their engines say >=20); esbuild bundles them for the browser.
NPM = {
    "@modelcontextprotocol/ext-apps": "2.0.4",
    "@modelcontextprotocol/client": "2.4.0",
    "@modelcontextprotocol/core": "2.4.0",
    "zod": "4.6.7",
    "esbuild": "0.28.2",
}
HERE = Path(__file__).parent
ENTRY = 'export { AppBridge, PostMessageTransport } from "@modelcontextprotocol/ext-apps/app-bridge";\n'
CALL_TIMEOUT = 300.0


def _installed(prefix: Path) -> bool:
    for package, version in NPM.items():
        manifest = prefix / "node_modules" / package / "package.json"
        if not manifest.exists() or f'"version": "{version}"' not in manifest.read_text():
            return False
    return True


@pytest.fixture(scope="session")
def host_bridge() -> Path:
    """The host bridge as one browser script (global ExtApps), built once per pinned version."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is missing: ./dev test installs nodejs/npm (apt-get install nodejs npm)")
    prefix = CACHE / "npm-ext-apps"
    bundle = prefix / f"host-bridge-{NPM['@modelcontextprotocol/ext-apps']}.js"
    if not _installed(prefix):
        prefix.mkdir(parents=True, exist_ok=True)
        wanted = [f"{name}@{version}" for name, version in NPM.items()]
        run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", *wanted], timeout=900)
        bundle.unlink(missing_ok=True)
    if not bundle.exists():
        entry = prefix / "host-bridge-entry.mjs"
        entry.write_text(ENTRY)
        esbuild = prefix / "node_modules" / ".bin" / "esbuild"
        run(
            [str(esbuild), str(entry), "--bundle", "--format=iife", "--global-name=ExtApps", "--platform=browser",
             f"--outfile={bundle}"],
            cwd=str(prefix),
        )  # fmt: skip
    return bundle


@pytest.fixture(scope="session")
def host_page(host_bridge: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """host.html beside its scripts, in a directory of its own (loaded as a file://)."""
    where = tmp_path_factory.mktemp("host")
    shutil.copy(HERE / "host.html", where / "host.html")
    shutil.copy(HERE / "host.js", where / "host.js")
    shutil.copy(host_bridge, where / "host-bridge.js")
    return where / "host.html"


def dumped(value: Any) -> Any:
    return value.model_dump(by_alias=True, mode="json", exclude_none=True)


@dataclass
class Host:
    """The host page in Chromium, its server calls relayed to a real crashfleet serve."""

    page: Chrome
    server: StdioServer
    calls: list[dict[str, Any]]

    async def run(self, tool: str, args: dict[str, Any], result: dict[str, Any] | None = None) -> dict[str, Any]:
        """Show `tool`'s view: with `result`, else the host calls the tool (with `args`)."""
        shown = await self.page.evaluate(f"hostRun({_js(tool)}, {_js(args)}, {_js(result)})")
        await self.page.until("window.__events.some(e => e.initialized)", 30)
        return dict(shown)

    async def world(self) -> World:
        return await self.page.view_world()


def _js(value: Any) -> str:
    import json

    return "null" if value is None else json.dumps(value)


@asynccontextmanager
async def hosting(server: StdioServer, host_page: Path, profile: Path) -> AsyncIterator[Host]:
    calls: list[dict[str, Any]] = []

    async def relay(request: dict[str, Any]) -> Any:
        method, params = request["method"], request["params"]
        calls.append({"method": method, "params": params})
        if method == "tools/list":
            return dumped(await asyncio.to_thread(server.list_tools))
        if method == "resources/read":
            read = await asyncio.to_thread(server.run, lambda: server.client.read_resource(params["uri"]))
            return dumped(read)
        if method == "tools/call":
            called = await asyncio.to_thread(
                server.call, params["name"], params.get("arguments") or {}, timeout=CALL_TIMEOUT
            )
            return dumped(called)
        raise ValueError(f"the test host relays no {method}")

    async with chrome(profile, host_page.as_uri(), {"crashfleetServer": relay}) as page:
        yield Host(page, server, calls)
