"""A real agent (the zipapp) on pipes with its own policy file, spoken to as the controller's link would."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from crashfleet.controller.bundle import write_bundle

CALL_TIMEOUT = 120.0


class PolicyAgent:
    """`python3 agent.pyz serve --dir BASE/agent --policy BASE/policy.json`; call() returns the reply."""

    def __init__(self, base: Path, **policy: Any) -> None:
        self.dir = base / "agent"
        path = base / "policy.json"
        path.write_text(json.dumps(policy))
        path.chmod(0o644)
        zipapp = base / "agent.pyz"
        write_bundle(zipapp)
        self.log = open(base / "agent.log", "wb")
        self.proc = subprocess.Popen([sys.executable, str(zipapp), "serve", "--dir", str(self.dir),
                                      "--policy", str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log)
        self.ids = 0
        self.buffer = b""

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.ids += 1
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": self.ids, "method": method,
                                          "params": params}).encode() + b"\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + CALL_TIMEOUT
        while True:
            while b"\n" not in self.buffer:
                left = deadline - time.monotonic()
                assert left > 0 and select.select([self.proc.stdout], [], [], left)[0], f"{method}: no answer"
                chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
                assert chunk, f"the agent exited: {Path(self.log.name).read_text()[-2000:]}"
                self.buffer += chunk
            line, _, self.buffer = self.buffer.partition(b"\n")
            message = json.loads(line)
            if message.get("id") == self.ids:
                return message  # type: ignore[no-any-return]

    def result(self, method: str, **params: Any) -> dict[str, Any]:
        message = self.call(method, **params)
        assert "result" in message, message
        return message["result"]  # type: ignore[no-any-return]

    def error(self, method: str, **params: Any) -> dict[str, Any]:
        message = self.call(method, **params)
        assert "error" in message, message
        return message["error"]  # type: ignore[no-any-return]

    def stop(self) -> int:
        """Close stdin as a departing controller does: the agent stops every child and exits."""
        assert self.proc.stdin
        self.proc.stdin.close()
        try:
            return self.proc.wait(30)
        finally:
            self.log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
