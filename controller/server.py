"""`crashfleet serve`: the MCP wiring around the plain tool functions in tools/."""

from __future__ import annotations

import asyncio
import getpass
import hmac
import logging
import secrets
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.responses import JSONResponse

from crashfleet.agent import AGENT_VERSION

from . import registry, schemas, views
from .errors import CrashfleetError
from .runtime import Runtime
from .settings import NO_INVENTORY, Settings, config_dir
from .surface import CrashfleetServer
from .task_store import TaskStore
from .tasks import Tasks

log = logging.getLogger(__name__)
INSTRUCTIONS = (
    "crashfleet runs incident-response tools on many Linux hosts over SSH. Hosts are chosen with "
    "Ansible patterns (all, web, web:&prod, web:!web03, ~regex). Results group hosts that answered "
    "the same; long outputs stay on the host: page them with output_page, grep with output_search."
)


def build_server(rt: Runtime) -> MCPServer:
    instructions = INSTRUCTIONS if rt.settings.inventory else f"{INSTRUCTIONS} Note: {NO_INVENTORY}."
    mcp = CrashfleetServer(
        rt,
        name="crashfleet",
        title="crashfleet",
        instructions=instructions,
        version=AGENT_VERSION,
        log_level="WARNING",
        middleware=[compact_schemas],
        extensions=[views.extension(), Tasks(rt, TaskStore(task_table(rt)))],
    )

    registry.register_all(mcp, rt)
    return mcp


def task_table(rt: Runtime) -> Path:
    """Beside the job registry (the same slot): a restarted server answers its tasks again."""
    return rt.settings.audit_path().parent / f"tasks-{rt.identity.slot}.json"


async def compact_schemas(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """tools/list stays small: see schemas.compact."""
    result = await call_next(ctx)
    if getattr(ctx, "method", None) == "tools/list" and isinstance(result, dict):
        for tool in result.get("tools", []):
            if "inputSchema" in tool:
                tool["inputSchema"] = schemas.compact(tool["inputSchema"])
            if "outputSchema" in tool:
                tool["outputSchema"] = schemas.compact(tool["outputSchema"], output=True)
    return result


class BearerAuth:
    """Pure ASGI: every HTTP request needs `Authorization: Bearer <token>`; lifespan passes through."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                body = {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {"code": -32001, "message": "unauthorized: missing or wrong bearer token"},
                }
                response = JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def http_token(settings: Settings) -> str:
    """CRASHFLEET_HTTP_TOKEN, else one generated once and kept 0600 in the config dir."""
    if settings.http_token is not None and settings.http_token.get_secret_value().strip():
        return settings.http_token.get_secret_value().strip()
    path = config_dir() / "http-token"
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise CrashfleetError(
                f"{path} is readable by others: refusing to use it as the HTTP token",
                f"chmod 600 {path}, or delete it to have a new one generated",
            )
        token = path.read_text().strip()
        if token:
            return token
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(path.name + ".tmp")
    tmp.touch(mode=0o600)
    tmp.write_text(token + "\n")
    tmp.replace(path)
    return token


class CloseOnShutdown:
    """Pure ASGI: close the runtime (agents, SSH) during the lifespan shutdown.

    uvicorn re-raises SIGTERM after its own shutdown, so code after serve() never runs.
    """

    def __init__(self, app: Any, on_shutdown: Callable[[], Awaitable[None]]) -> None:
        self.app = app
        self.on_shutdown = on_shutdown

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def receive_and_close() -> Any:
            message = await receive()
            if message.get("type") == "lifespan.shutdown":
                await self.on_shutdown()
            return message

        await self.app(scope, receive_and_close, send)


def http_app(mcp: MCPServer, settings: Settings, token: str) -> BearerAuth:
    port = settings.http_port
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[f"127.0.0.1:{port}", f"localhost:{port}"],
        allowed_origins=[f"http://127.0.0.1:{port}", f"http://localhost:{port}"],
    )
    return BearerAuth(mcp.streamable_http_app(streamable_http_path="/mcp", transport_security=security), token)


def serve(settings: Settings, transport: str) -> None:
    if transport == "http" and settings.http_host not in ("127.0.0.1", "localhost"):
        raise CrashfleetError(
            f"refusing to serve HTTP on {settings.http_host}: only loopback is allowed",
            "put an authenticating reverse proxy in front if you need remote access",
        )
    asyncio.run(_serve(settings, transport))


async def _serve(settings: Settings, transport: str) -> None:
    who = "stdio" if transport == "stdio" else "http"
    rt = Runtime.create(settings, who=f"{who}:{getpass.getuser()}", role="serve")
    if settings.inventory is None:
        print(f"crashfleet: {NO_INVENTORY}", file=sys.stderr)
    mcp = build_server(rt)
    try:
        if transport == "stdio":
            await mcp.run_stdio_async()
        else:
            token = http_token(settings)
            app = CloseOnShutdown(http_app(mcp, settings, token), rt.close)
            config = uvicorn.Config(
                app, host=settings.http_host, port=settings.http_port, log_level="warning", lifespan="on"
            )
            print(
                f"crashfleet: MCP over HTTP at http://{settings.http_host}:{settings.http_port}/mcp "
                f"(bearer token: CRASHFLEET_HTTP_TOKEN or {config_dir() / 'http-token'})",
                file=sys.stderr,
            )
            await uvicorn.Server(config).serve()
    finally:
        await rt.close()


__all__ = ["BearerAuth", "build_server", "http_app", "http_token", "serve"]
