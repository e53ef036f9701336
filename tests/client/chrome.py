"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol, for a page that lives a
while: events read as they come, page bindings answered by the test, the view's frame reached through
an isolated world, real mouse input, every network request and console error kept."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import websockets

from tests.report.browser import LISTENING

Binding = Callable[[dict[str, Any]], Awaitable[Any]]  # the page's request -> what to answer it
World = tuple[str, int]  # (DevTools session of the view's frame, an isolated world's context id there)
PAGE = "page"  # send() to the page's own session
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-domain-reliability",
    "--disable-sync",
    "--metrics-recording-only",
    "--disable-features=Translate,OptimizationHints,MediaRouter,InterestFeedContentSuggestions",
    "--remote-debugging-port=0",
    "--window-size=1280,900",
]


class Chrome:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.session = ""
        self.frames: list[str] = []  # sessions of the page's out-of-process frames (the sandboxed view)
        self.bindings: dict[str, Binding] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            if "id" in message and message["id"] in self.waiting:
                self.waiting.pop(message["id"]).set_result(message)
                continue
            self.events.append(message)
            if message.get("method") == "Runtime.bindingCalled":
                self._spawn(self._answer(message["params"]))
            elif message.get("method") == "Target.attachedToTarget":
                self._spawn(self._watch(message["params"]))
            elif message.get("method") == "Target.detachedFromTarget" and message["params"]["sessionId"] in self.frames:
                self.frames.remove(message["params"]["sessionId"])  # a view replaced by the next

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _watch(self, params: dict[str, Any]) -> None:
        """A frame in a process of its own (a sandboxed view is one): its console, exceptions and
        network seen like the page's, before its scripts run."""
        session = params["sessionId"]
        if params["targetInfo"]["type"] == "iframe":
            self.frames.append(session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            await self.send(f"{domain}.enable", session=session)
        await self.send("Runtime.runIfWaitingForDebugger", session=session)

    async def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = PAGE) -> Any:
        msg_id = next(self.ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session == PAGE and self.session:
            message["sessionId"] = self.session
        elif session not in (PAGE, None):
            message["sessionId"] = session
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[msg_id] = future
        await self.ws.send(json.dumps(message))
        reply = await future
        assert "error" not in reply, f"{method}: {reply['error']}"
        return reply.get("result", {})

    async def _answer(self, params: dict[str, Any]) -> None:
        """A page binding called: run the test's handler, hand the page its answer (or error)."""
        request = json.loads(params["payload"])
        try:
            result, ok = await self.bindings[params["name"]](request), True
        except Exception as exc:  # the page shows what went wrong; the test sees it there
            result, ok = f"{type(exc).__name__}: {exc}", False
        call = f"window.__reply({json.dumps(request['id'])}, {json.dumps(ok)}, {json.dumps(result)})"
        await self.send("Runtime.evaluate", {"expression": call})

    async def bind(self, name: str, handler: Binding) -> None:
        self.bindings[name] = handler
        await self.send("Runtime.addBinding", {"name": name})

    async def evaluate(self, expression: str, world: World | None = None) -> Any:
        params: dict[str, Any] = {"expression": expression, "returnByValue": True, "awaitPromise": True}
        session = PAGE
        if world is not None:
            session, params["contextId"] = world
        answer = await self.send("Runtime.evaluate", params, session=session)
        assert "exceptionDetails" not in answer, f"{expression[:200]}: {answer['exceptionDetails']}"
        return answer["result"].get("value")

    async def until(self, expression: str, timeout: float, world: World | None = None) -> Any:
        """Poll a condition in the page until it holds (its value), failing after `timeout` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = await self.evaluate(expression, world)
            if value:
                return value
            assert loop.time() < deadline, f"not true within {timeout:g} s: {expression}"
            await asyncio.sleep(0.1)  # polling the page's state, not waiting for time to pass

    async def view_world(self) -> World:
        """An isolated world in the view's frame (the newest sandboxed iframe): its DOM, not its scripts."""
        assert self.frames, "the view's frame never attached"
        session = self.frames[-1]
        tree = await self.send("Page.getFrameTree", session=session)
        world = await self.send(
            "Page.createIsolatedWorld",
            {"frameId": tree["frameTree"]["frame"]["id"], "worldName": "crashfleet-test"},
            session=session,
        )
        return session, int(world["executionContextId"])

    async def point(self, selector: str, world: World) -> tuple[float, float]:
        """Viewport coordinates of an element of the view, scrolled into sight."""
        found = json.dumps(selector)
        inner = await self.evaluate(
            f"(() => {{ const r = document.querySelector({found}).getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()",
            world,
        )
        await self.evaluate(
            f"(() => {{ const f = document.getElementById('view').getBoundingClientRect();"
            f" window.scrollBy(0, f.top + {inner[1]} - 300); }})()"
        )
        frame = await self.evaluate(
            "(() => { const f = document.getElementById('view').getBoundingClientRect(); return [f.left, f.top]; })()"
        )
        return frame[0] + inner[0], frame[1] + inner[1]

    async def hover(self, selector: str, world: World) -> None:
        x, y = await self.point(selector, world)
        for at in ((0, 0), (x, y)):  # from outside: an element drawn anew under a resting pointer is entered too
            await self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": at[0], "y": at[1]})

    async def click(self, selector: str, world: World) -> None:
        x, y = await self.point(selector, world)
        await self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}
            )

    async def screenshot(self, path: Path) -> bytes:
        """The whole page: the window grown to it first, so frames below the fold are painted too."""
        height = await self.evaluate("Math.ceil(document.documentElement.scrollHeight)")
        metrics = {"width": 1280, "height": max(900, int(height)), "deviceScaleFactor": 1, "mobile": False}
        await self.send("Emulation.setDeviceMetricsOverride", metrics)
        await self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        for frame in self.frames:  # and the view's own frame has painted since
            await self.send(
                "Runtime.evaluate",
                {"expression": "new Promise(r => requestAnimationFrame(r))", "awaitPromise": True},
                session=frame,
            )
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        await self.send("Emulation.clearDeviceMetricsOverride")
        data = base64.b64decode(shot["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return data

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries, from the page and its frames."""
        found = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"exception: {params.get('exceptionDetails')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        return found

    async def close(self) -> None:
        self.reader.cancel()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(self.reader, *self.tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def chrome(profile: Path, url: str, bindings: dict[str, Binding]) -> AsyncIterator[Chrome]:
    """Chromium on `url` with the page's bindings in place before it loads."""
    binary = shutil.which("chromium")
    assert binary, "chromium is missing: ./dev test installs it (apt-get install chromium)"
    proc = subprocess.Popen(
        [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        ws_url = await _listening(proc)
        async with websockets.connect(ws_url, max_size=64 << 20) as ws:
            page = Chrome(ws)
            try:
                target = await page.send("Target.createTarget", {"url": "about:blank"}, session=None)
                attached = await page.send(
                    "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=None
                )
                page.session = attached["sessionId"]
                for domain in ("Page", "Runtime", "Log", "Network"):
                    await page.send(f"{domain}.enable")
                auto = {"autoAttach": True, "waitForDebuggerOnStart": True, "flatten": True}
                await page.send("Target.setAutoAttach", auto)
                for name, handler in bindings.items():
                    await page.bind(name, handler)
                await page.send("Page.navigate", {"url": url})
                await page.until("document.readyState === 'complete'", 30)
                yield page
            finally:
                await page.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # chromium's own process group: its renderers too
        proc.wait(30)


async def _listening(proc: subprocess.Popen[str]) -> str:
    loop = asyncio.get_running_loop()
    assert proc.stderr is not None
    while True:
        line = await loop.run_in_executor(None, proc.stderr.readline)
        assert line, f"chromium exited ({proc.poll()}) before it listened"
        match = LISTENING.search(line)
        if match:
            stderr = proc.stderr
            threading.Thread(target=stderr.read, daemon=True).start()  # a full pipe would stall chromium
            return match.group(1)
