"""Warm fan-outs through `crashfleet serve` (stdio), driven by the MCP SDK's client with a progress
token, as Claude Desktop calls tools: the wall time and the server's CPU (its workers' included) per
call. Used by fanout.py; the server is a controller of its own, so its first call starts its agents."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mcp import Client, StdioServerParameters, stdio_client

from bench.procstat import children_of, rss_mb, total_cpu

CALL_TIMEOUT = 600.0
Runs = dict[str, tuple[list[float], list[float]]]  # tool -> (wall seconds, server CPU seconds) per run


def _server_pid(marker: str) -> int:
    """The `crashfleet serve` process started with `marker` in its environment."""
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if f"CRASHFLEET_BENCH_MARK={marker}".encode() in environ and b"serve" in command:
            return int(entry)
    raise RuntimeError("the crashfleet serve process was not found")


async def served_warm(command: Path, env: Mapping[str, str], tmp: Path, n: int, runs: int) -> tuple[Runs, float]:
    """Warm fleet_check and fleet_run uname through MCP; the runs, and the server's RSS (with workers) after."""
    env = {**env, "CRASHFLEET_BENCH_MARK": str(tmp)}
    params = StdioServerParameters(command=str(command), args=["serve"], env=env, cwd=str(tmp))
    calls: dict[str, dict[str, Any]] = {
        "fleet_check": {"pattern": "all"},
        "fleet_run": {"pattern": "all", "command": "uname"},
    }
    measured: Runs = {}

    async def progress(done: float, total: float | None, message: str | None) -> None:
        return None

    with open(tmp / "serve.log", "w") as log:
        async with Client(stdio_client(params, errlog=log), mode="legacy") as client:
            server = _server_pid(str(tmp))
            first = await _answered(client, "fleet_check", {"pattern": "all"})
            _require(first, n, "served fleet_check (its first: agents start)")
            for tool, arguments in calls.items():
                walls, cpus = measured.setdefault(tool, ([], []))
                for _ in range(runs):
                    pids = [server, *children_of(server, "shard_worker")]
                    before, started = total_cpu(pids), time.perf_counter()
                    result = await client.call_tool(
                        tool, arguments, progress_callback=progress, read_timeout_seconds=CALL_TIMEOUT
                    )
                    walls.append(time.perf_counter() - started)
                    cpus.append(total_cpu(pids) - before)
                    _require(result.structured_content, n, f"served {tool}")
            rss = sum(rss_mb(pid) for pid in [server, *children_of(server, "shard_worker")])
    return measured, rss


async def _answered(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any] | None:
    """The call's complete answer: a cold fan-out past the call's budget (40 s) answers with the
    hosts done so far and a job whose answer (job_status) is the complete one once it is done."""
    result = (await client.call_tool(tool, arguments, read_timeout_seconds=CALL_TIMEOUT)).structured_content
    while result and result.get("job_id") and result.get("summary", {}).get("running"):
        await asyncio.sleep(1.0)  # the bench polls a job, as a client would
        status = await client.call_tool("job_status", {"job_id": result["job_id"]}, read_timeout_seconds=CALL_TIMEOUT)
        result = status.structured_content
    return result


def _require(structured: dict[str, Any] | None, n: int, what: str) -> None:
    ok = (structured or {}).get("summary", {}).get("ok")
    if ok != n:
        raise RuntimeError(f"{what}: {ok}/{n} hosts ok: {(structured or {}).get('errors', [])[:5]}")
