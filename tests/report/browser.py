"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol: load a page, collect console
errors and exceptions, measure elements, take a screenshot."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import websockets

LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


class Page:
    def __init__(self, ws: Any, session: str) -> None:
        self.ws, self.session = ws, session
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def send(self, method: str, params: dict[str, Any] | None = None, session: bool = True) -> Any:
        msg_id = next(self.ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        await self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(await self.ws.recv())
            if reply.get("id") == msg_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply.get("result", {})
            self.events.append(reply)

    async def until(self, event: str) -> None:
        while not any(e.get("method") == event for e in self.events):
            self.events.append(json.loads(await self.ws.recv()))

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries seen so far."""
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


async def load(url: str, profile: Path, script: str, screenshot: Path, timeout: float = 120) -> tuple[Any, list[str]]:
    """(value of `script` after load, problems) for `url`; a PNG screenshot of the page is written."""
    binary = shutil.which("chromium")
    assert binary, "chromium is missing: ./dev test installs it (apt-get install chromium)"
    proc = subprocess.Popen(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--window-size=1280,900",
            "about:blank",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        return await asyncio.wait_for(_drive(proc, url, script, screenshot), timeout)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # chromium's own process group: its renderers too
        proc.wait(30)


async def _drive(proc: subprocess.Popen[str], url: str, script: str, screenshot: Path) -> tuple[Any, list[str]]:
    loop = asyncio.get_running_loop()
    ws_url = None
    assert proc.stderr is not None
    while ws_url is None:
        line = await loop.run_in_executor(None, proc.stderr.readline)
        assert line, f"chromium exited ({proc.poll()}) before it listened"
        match = LISTENING.search(line)
        ws_url = match.group(1) if match else None
    async with websockets.connect(ws_url, max_size=64 << 20) as ws:
        page = Page(ws, "")
        target = await page.send("Target.createTarget", {"url": "about:blank"}, session=False)
        attached = await page.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, session=False
        )
        page.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            await page.send(f"{domain}.enable")
        await page.send("Page.navigate", {"url": url})
        await page.until("Page.loadEventFired")
        value = await page.send("Runtime.evaluate", {"expression": script, "returnByValue": True})
        shot = await page.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        return value["result"].get("value"), page.problems()
