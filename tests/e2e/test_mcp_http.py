"""`crashfleet serve --transport http` as a real subprocess: bearer auth, DNS-rebinding guards, the token file.

The SDK client reaches it through streamable HTTP with an `Authorization: Bearer` header; raw httpx2
requests check the status codes the guards answer with.
"""

from __future__ import annotations

import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from tests.e2e.conftest import CALL_TIMEOUT, LEGACY, MODERN, TOOLS, HttpServer, assert_no_agents, leaves, structured
from tests.rig import Rig

pytestmark = pytest.mark.timeout(90)

MODES = [pytest.param("legacy", LEGACY, id="legacy"), pytest.param(MODERN, MODERN, id=MODERN)]
ACCEPT = "application/json, text/event-stream"
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": LEGACY,
        "capabilities": {},
        "clientInfo": {"name": "crashfleet-e2e-raw", "version": "0"},
    },
}


@pytest.fixture(scope="module")
def server(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """One HTTP server with CRASHFLEET_HTTP_TOKEN set, for the module; stopped by pid and checked gone."""
    started = HttpServer(rig, tmp_path_factory.mktemp("http"), token=secrets.token_urlsafe(24))
    try:
        yield started
    finally:
        started.stop()
        assert_no_agents(rig)
        assert "Traceback" not in started.log(), started.log()


async def list_and_call(
    url: str, token: str, mode: str, tool: str = "fleet_check", pattern: str = "web01"
) -> tuple[str, set[str], dict]:  # type: ignore[type-arg]
    """Through the SDK with the bearer header: negotiated version, tool names, `tool(pattern)`'s answer."""
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    with anyio.fail_after(CALL_TIMEOUT):
        async with http, Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            tools = await client.list_tools()
            result = await client.call_tool(tool, {"pattern": pattern})
            return client.protocol_version, {t.name for t in tools.tools}, structured(result)


async def raw_post(server: HttpServer, headers: dict[str, str]) -> httpx2.Response:
    async with httpx2.AsyncClient(timeout=CALL_TIMEOUT) as http:
        return await http.post(server.url, json=INITIALIZE, headers={"Accept": ACCEPT, **headers})


@pytest.mark.parametrize(("mode", "version"), MODES)
async def test_bearer_token_lists_tools_and_checks(server: HttpServer, mode: str, version: str) -> None:
    assert server.token is not None
    negotiated, names, data = await list_and_call(server.url, server.token, mode)
    assert negotiated == version
    assert names == TOOLS, f"missing {TOOLS - names}, unexpected {names - TOOLS}"
    assert data["summary"]["ok"] == 1, data
    assert [(g["hosts"], g["status"]) for g in data["groups"]] == [("web01", "ok")], data["groups"]


@pytest.mark.parametrize(
    "auth", [None, "Bearer wrong-token", "token-without-scheme"], ids=["no-token", "wrong-token", "no-scheme"]
)
async def test_raw_request_without_the_token_is_401(server: HttpServer, auth: str | None) -> None:
    if auth == "token-without-scheme":
        auth = server.token
    response = await raw_post(server, {"Authorization": auth} if auth else {})
    assert response.status_code == 401, f"{response.status_code} {response.text[:300]}"
    assert response.headers.get("www-authenticate", "").startswith("Bearer"), dict(response.headers)
    error = response.json()["error"]
    assert error["code"] == -32001 and "unauthorized" in error["message"], error


@pytest.mark.parametrize("mode", ["legacy", MODERN])
@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["no-token", "wrong-token"])
async def test_sdk_client_without_the_token_raises_mcperror(server: HttpServer, mode: str, token: str | None) -> None:
    caught: list[BaseException] = []
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"} if token else None)
    try:
        with anyio.fail_after(CALL_TIMEOUT):
            async with http, Client(streamable_http_client(server.url, http_client=http), mode=mode) as client:
                await client.list_tools()
    except* MCPError as group:
        caught = leaves(group)
    assert caught, "the SDK client got through without the token"
    assert all(isinstance(e, MCPError) and e.code == -32001 and "unauthorized" in e.error.message for e in caught), (
        caught
    )


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({"Host": "evil.example"}, 421, id="bad-host"),
        pytest.param({"Host": "127.0.0.1:1"}, 421, id="other-port-host"),
        pytest.param({"Origin": "http://evil.example"}, 403, id="bad-origin"),
        pytest.param({}, 200, id="control-no-origin"),
        pytest.param({"Origin": "http://localhost:{port}"}, 200, id="control-own-origin"),
    ],
)
async def test_dns_rebinding_guards(server: HttpServer, headers: dict[str, str], status: int) -> None:
    """With the right token, a foreign Host is 421 and a foreign Origin 403 (controls: 200)."""
    headers = {k: v.format(port=server.port) for k, v in headers.items()}
    response = await raw_post(server, {"Authorization": f"Bearer {server.token}", **headers})
    assert response.status_code == status, f"{headers}: {response.status_code} {response.text[:300]}"


def test_env_token_leaves_no_token_file(server: HttpServer) -> None:
    assert not server.token_file.exists(), "CRASHFLEET_HTTP_TOKEN was set, yet a token file was written"


async def test_generated_token_is_stored_0600_and_reused(
    http_servers: Callable[..., HttpServer], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    first = http_servers(token=None, home=home)
    path = first.token_file
    assert path.is_file(), f"no token file at {path}; log: {first.log()}"
    mode = stat.S_IMODE(path.stat().st_mode)
    assert mode == 0o600, f"token file mode is {mode:o}, want 600"
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0, "token dir readable by others"
    token = path.read_text().strip()
    assert len(token) >= 32, f"generated token too short: {len(token)} chars"
    assert token not in first.log(), "the server printed its token"
    before = path.stat()

    negotiated, names, data = await list_and_call(first.url, token, "legacy", "fleet_hosts", "web")
    assert names == TOOLS and data["count"] == len(first.rig.hosts), data
    assert (await raw_post(first, {"Authorization": "Bearer not-" + token})).status_code == 401

    assert first.stop() is not None
    second = http_servers(token=None, home=home)  # a restart: same config dir, same token
    assert path.read_text().strip() == token, "the restart generated a new token"
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "token file rewritten"
    negotiated, names, data = await list_and_call(second.url, token, MODERN, "fleet_hosts", "web01")
    assert negotiated == MODERN and data["hosts"] == "web01", data
