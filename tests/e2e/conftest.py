"""End-to-end plumbing: real `crashfleet serve` children on the sshd rig, driven by the real MCP SDK client.

Nothing here is mocked: the server is the installed console script, started as a subprocess with an
explicit environment (inventory and known_hosts of the rig, XDG dirs and HOME inside a temp dir, cwd
there too so no stray .env is read), and the client is the mcp SDK's own.

Stdio servers are driven from synchronous tests through an anyio blocking portal (one event loop
thread per server), so one server and one client connection can serve several tests: the SDK's task
groups are entered and left by the same task, which a module-scoped async fixture could not promise.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import anyio
import mcp.types as types
import pytest
from anyio.from_thread import start_blocking_portal
from mcp import Client, ClientSession, StdioServerParameters, stdio_client

from crashfleet.controller import registry
from tests.helpers import agent_pids, alive
from tests.rig import Rig

# The crashfleet under test: this venv's (the editable tree), or an installed wheel's (./dev test runs
# these tests a second time with TESTS_CRASHFLEET_COMMAND pointing at one; tests/packaging builds it).
CRASHFLEET = Path(os.environ.get("TESTS_CRASHFLEET_COMMAND") or Path(sys.executable).parent / "crashfleet")
TOOLS = {spec.name for spec in registry.discover()}  # what the server must list: every tool the modules declare
HANDSHAKE_PINNED = "2025-06-18"  # no Client mode offers it: initialize by hand
LEGACY = "2025-11-25"  # what Client(mode="legacy") offers
MODERN = "2026-07-28"  # Client(mode=MODERN): no handshake at all
STDIO_VERSIONS = [HANDSHAKE_PINNED, LEGACY, MODERN]

CALL_TIMEOUT = 30.0  # one tool call (the rig answers in ~1 s; 30 s is the server's own host deadline)
START_TIMEOUT = 20.0  # a server process to show up / accept connections
EXIT_TIMEOUT = 10.0  # a server or agents to go away


# --------------------------------------------------------------------------- processes and waits


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until truthy or `timeout` seconds passed; the last answer, as a bool."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)


def pids_with_env(name: str, value: str) -> list[int]:
    """Live processes (not this one) whose environment holds exactly name=value."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:
            continue
        if needle in environ and alive(int(entry)):
            found.append(int(entry))
    return found


def assert_no_agents(rig: Rig, timeout: float = EXIT_TIMEOUT) -> None:
    """No agent process of this rig may be left (they exit once their SSH channel closes)."""
    marker = str(rig.base)
    wait_for(lambda: not agent_pids(marker), timeout)
    assert not agent_pids(marker), (
        f"agent processes of this rig still running {timeout:g} s after the server went away: {agent_pids(marker)}"
    )


def free_tcp_port() -> int:
    """A port bindable on 127.0.0.1, below Linux's default ephemeral range (32768+)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port on 127.0.0.1")


def tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"


def server_env(rig: Rig, home: Path, **extra: str) -> dict[str, str]:
    """Everything the child needs, explicitly: the SDK passes only HOME/PATH/USER... to stdio children."""
    for sub in ("config", "state"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "CRASHFLEET_INVENTORY": str(rig.inventory),
        "CRASHFLEET_SSH_KNOWN_HOSTS": str(rig.known_hosts),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_STATE_HOME": str(home / "state"),
    }
    env.update(extra)
    return env


def audit_entries(home: Path) -> list[dict[str, Any]]:
    path = home / "state" / "crashfleet" / "audit.jsonl"
    assert path.exists(), f"no audit log at {path}: XDG_STATE_HOME was not honoured"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def structured(result: types.CallToolResult) -> dict[str, Any]:
    """The structuredContent of a successful tool result, failing with the server's text otherwise."""
    text = " ".join(c.text for c in result.content if isinstance(c, types.TextContent))
    assert not result.is_error, f"tool error: {text}"
    assert isinstance(result.structured_content, dict), f"no structuredContent; text: {text[:500]}"
    return result.structured_content


def error_text(result: types.CallToolResult) -> str:
    """The text of a tool error, failing if the result was not a tool error."""
    assert result.is_error, f"expected a tool error, got success: {result.structured_content}"
    text = " ".join(c.text for c in result.content if isinstance(c, types.TextContent))
    assert text.strip(), "tool error without any text"
    return text


def leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


# --------------------------------------------------------------------------- stdio servers


@asynccontextmanager
async def _stdio_client(
    version: str, params: StdioServerParameters, errlog: TextIO, options: dict[str, Any] | None = None
) -> AsyncIterator[tuple[Any, ClientSession, str | None]]:
    """(caller, session, version the server answered in initialize) for one protocol version."""
    if version == HANDSHAKE_PINNED:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            with anyio.fail_after(START_TIMEOUT):
                answer = await session.send_request(
                    types.InitializeRequest(
                        params=types.InitializeRequestParams(
                            protocol_version=version,
                            capabilities=types.ClientCapabilities(),
                            client_info=types.Implementation(name="crashfleet-e2e", version="0"),
                        )
                    ),
                    types.InitializeResult,
                )
                session.adopt(answer)
                await session.send_notification(types.InitializedNotification())
            yield session, session, answer.protocol_version
        return
    mode = "legacy" if version == LEGACY else version
    async with Client(stdio_client(params, errlog=errlog), mode=mode, **(options or {})) as client:
        init = client.session.initialize_result
        yield client, client.session, init.protocol_version if init is not None else None


class StdioServer:
    """One `crashfleet serve` child on stdio with the SDK client connected, usable from sync tests."""

    def __init__(
        self, version: str, rig: Rig, home: Path, *, client: dict[str, Any] | None = None, **extra_env: str
    ) -> None:
        """client: more options for the SDK's Client (extensions, an elicitation callback)."""
        self.version = version
        self.rig = rig
        self.home = home
        self.stderr_path = home / "server-stderr.log"
        self.closed = False
        env = server_env(rig, home, **extra_env)
        params = StdioServerParameters(command=str(CRASHFLEET), args=["serve"], env=env, cwd=str(home))
        self._stack = ExitStack()
        try:
            self.portal = self._stack.enter_context(start_blocking_portal())
            errlog = self._stack.enter_context(open(self.stderr_path, "w"))
            self.client, self.session, self.answered = self._stack.enter_context(
                self.portal.wrap_async_context_manager(_stdio_client(version, params, errlog, client))
            )
            marker = env["XDG_STATE_HOME"]
            wait_for(lambda: pids_with_env("XDG_STATE_HOME", marker), START_TIMEOUT)
            pids = pids_with_env("XDG_STATE_HOME", marker)
            assert len(pids) == 1, f"expected one server process, found {pids}; stderr: {tail(self.stderr_path)}"
            self.server_pid = pids[0]
        except BaseException:
            self._stack.close()
            raise

    @property
    def protocol_version(self) -> str:
        return str(self.client.protocol_version)

    def run(self, fn: Callable[[], Awaitable[Any]], timeout: float = CALL_TIMEOUT) -> Any:
        assert not self.closed, "this connection was closed"

        async def bounded() -> Any:
            with anyio.fail_after(timeout):
                return await fn()

        return self.portal.call(bounded)

    def call(
        self,
        tool: str,
        arguments: dict[str, Any] | None = None,
        *,
        progress: Callable[[float, float | None, str | None], Awaitable[None]] | None = None,
        timeout: float = CALL_TIMEOUT,
    ) -> types.CallToolResult:
        result = self.run(lambda: self.client.call_tool(tool, arguments or {}, progress_callback=progress), timeout)
        assert isinstance(result, types.CallToolResult), f"{tool}: unexpected result {result!r}"
        return result

    def list_tools(self) -> types.ListToolsResult:
        result = self.run(self.client.list_tools)
        assert isinstance(result, types.ListToolsResult)
        return result

    def stderr(self) -> str:
        return tail(self.stderr_path, 20_000)

    def close(self) -> float:
        """Leave the client (stdin EOF, then the SDK's SIGTERM/SIGKILL escalation); seconds it took."""
        if self.closed:
            return 0.0
        self.closed = True
        started = time.monotonic()
        self._stack.close()
        return time.monotonic() - started


# --------------------------------------------------------------------------- HTTP servers


class HttpServer:
    """`crashfleet serve --transport http` as a Popen child on a free loopback port."""

    def __init__(self, rig: Rig, home: Path, token: str | None, **extra_env: str) -> None:
        self.rig = rig
        self.home = home
        self.token = token
        self.port = free_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.log_path = home / f"server-{self.port}.log"
        extra = {"CRASHFLEET_HTTP_TOKEN": token} if token is not None else {}
        self.env = server_env(rig, home, **extra, **extra_env)
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [str(CRASHFLEET), "serve", "--transport", "http", "--port", str(self.port)],
                env=self.env,
                cwd=str(home),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def token_file(self) -> Path:
        return Path(self.env["XDG_CONFIG_HOME"]) / "crashfleet" / "http-token"

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not self._accepts():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"HTTP server exited with {self.proc.returncode} before listening: {tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"HTTP server not accepting on port {self.port} after {START_TIMEOUT:g} s: {tail(self.log_path)}"
                )
            time.sleep(0.05)

    def log(self) -> str:
        return tail(self.log_path, 20_000)

    def stop(self) -> int | None:
        """SIGTERM by pid, then make sure the process is gone (SIGKILL as the last resort, failing)."""
        pid = self.proc.pid
        if self.proc.poll() is None:
            os.kill(pid, signal.SIGTERM)
            try:
                self.proc.wait(EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self.proc.wait(EXIT_TIMEOUT)
                raise AssertionError(
                    f"HTTP server {pid} ignored SIGTERM for {EXIT_TIMEOUT:g} s; killed it. Log: {tail(self.log_path)}"
                ) from None
        assert not alive(pid), f"HTTP server {pid} still alive after it was stopped"
        return self.proc.returncode


@pytest.fixture
def http_servers(rig: Rig, tmp_path: Path) -> Iterator[Callable[..., HttpServer]]:
    """Start HTTP servers on demand (`start(token=..., home=...)`); every one is stopped and checked gone."""
    started: list[HttpServer] = []

    def start(token: str | None, home: Path | None = None, **extra_env: str) -> HttpServer:
        server = HttpServer(rig, home or tmp_path / f"home{len(started)}", token, **extra_env)
        started.append(server)
        return server

    yield start
    problems = []
    for server in started:
        try:
            server.stop()
        except AssertionError as exc:
            problems.append(str(exc))
    assert not problems, problems
