"""fleet_hosts, fleet_check, fleet_run: who is in the fleet and what each host is."""

from __future__ import annotations

import time
from typing import Annotated, Any

from pydantic import Field

from crashfleet.agent import protocol
from crashfleet.agent.commands import CATALOG
from crashfleet.inventory import Host

from ..errors import LinkClosed, UsageError
from ..grouping import HostOutcome, fold, group_outcomes
from ..models import FanoutResult, HostEntry, HostList
from ..progress import Progress
from ..registry import tool
from ..runtime import Runtime
from ..settings import NO_INVENTORY
from ..wiring import READ, REMOTE_READ, STARTS_WORK, Pattern, Timeout
from .common import digest, fanned, host_deadline, outcome_from_job

Command = Annotated[str, Field(description="catalogue command: " + ", ".join(sorted(CATALOG)))]
MAX_DETAILS = 50
VOLATILE_FACTS = ("hostname", "boot_id", "uptime_s", "store")


@tool("List hosts", "List inventory hosts matching a pattern (no connection).", READ)
def fleet_hosts(rt: Runtime, pattern: Pattern = "all") -> HostList:
    """Hosts matching an Ansible pattern, from the inventory alone (no connection)."""
    hosts = rt.fleet.match(pattern)
    names = {h.name for h in hosts}
    inventory = rt.fleet.inventory()
    groups = {
        name: fold(m for m in _members(inventory, name) if m in names)
        for name in inventory.group_names()
        if name not in ("all", "ungrouped")
    }
    details = [
        HostEntry(
            name=h.name,
            address=h.address,
            port=h.port,
            user=h.user,
            connection=h.connection,
            groups=[g for g in h.groups if g not in ("all", "ungrouped")],
            become=h.become,
        )
        for h in hosts[:MAX_DETAILS]
    ]
    note = f"details cut to {MAX_DETAILS} hosts" if len(hosts) > MAX_DETAILS else None
    source = inventory.source or f"built-in; {NO_INVENTORY}"
    return HostList(
        pattern=pattern,
        count=len(hosts),
        hosts=fold(h.name for h in hosts),
        groups={k: v for k, v in groups.items() if v},
        details=details,
        note=f"inventory: {source}" + (f"; {note}" if note else ""),
    )


@tool(
    "Check hosts",
    "Connect to hosts (installing the agent if needed) and report their facts (kernel, tools, BTF, tracefs), grouped.",
    REMOTE_READ,
)
async def fleet_check(
    rt: Runtime,
    pattern: Pattern = "all",
    refresh: Annotated[bool, Field(description="re-probe instead of cached facts")] = False,
    timeout: Timeout = None,
    progress: Progress | None = None,
) -> FanoutResult:
    """Connect (pushing the agent when needed) and report each host's facts, grouped."""
    deadline = host_deadline(rt, timeout)

    async def check(host: Host) -> HostOutcome:
        data = summarise_facts(await rt.fleet.checked_hello(host, refresh))
        return HostOutcome(host.name, "ok", key=digest(data), data=data)

    def assemble(outcomes: list[HostOutcome], elapsed: int, final: bool) -> FanoutResult:
        return group_outcomes(outcomes, elapsed, rt.settings.page_chars)

    hosts = rt.fleet.match(pattern)
    return await fanned(rt, "fleet_check", pattern, hosts, check, assemble, deadline=deadline, progress=progress)


@tool(
    "Run a command",
    "Run a read-only catalogue command on hosts; identical outputs grouped. "
    "Samplers (vmstat, dmesg-follow) run for `duration` seconds.",
    STARTS_WORK,
    defaults={"pattern": "all"},
)
async def fleet_run(
    rt: Runtime,
    pattern: Pattern,
    command: Command,
    duration: Annotated[float | None, Field(description="seconds, samplers only")] = None,
    timeout: Timeout = None,
    progress: Progress | None = None,
) -> FanoutResult:
    """Run a catalogue command on every host; still-running hosts leave a job to poll."""
    if command not in CATALOG:
        raise UsageError(f"unknown command {command!r}", "commands: " + ", ".join(sorted(CATALOG)))
    if duration is not None and not 0 < duration <= 3600:
        raise UsageError(f"duration must be between 0 and 3600 s, got {duration}")
    deadline = host_deadline(rt, timeout)
    params: dict[str, Any] = {"command": command, "page_bytes": rt.settings.page_chars}
    if duration is not None:
        params["duration"] = duration

    async def run(host: Host) -> HostOutcome:
        started = time.monotonic()
        await rt.fleet.link(host)  # connecting counts against the deadline: wait only for what is left
        left = deadline - (time.monotonic() - started)
        wait = max(0.0, min(rt.settings.command_wait, left - 1.0))
        try:
            return outcome_from_job(host.name, await rt.fleet.call(host, protocol.RUN, {**params, "wait": wait}))
        except LinkClosed as exc:
            if exc.started_job is None:
                raise
            return HostOutcome(
                host.name,
                "running",
                key="running",
                message=exc.message,
                output=f"the link dropped while it ran: {exc.message}",
                extra={"job_id": exc.started_job},
            )

    def assemble(outcomes: list[HostOutcome], elapsed: int, final: bool) -> FanoutResult:
        result = group_outcomes(outcomes, elapsed, rt.settings.page_chars)
        job = rt.jobs.start("fleet_run", pattern, outcomes, command=command) if final else None
        if job is not None:
            result.job_id = job.job_id
            result.note = f"{len(job.host_jobs)} host(s) still running: job_status('{job.job_id}') or job_cancel"
        return result

    hosts = rt.fleet.match(pattern)
    return await fanned(rt, "fleet_run", pattern, hosts, run, assemble, deadline=deadline, progress=progress)


def summarise_facts(hello: protocol.Hello) -> dict[str, Any]:
    """The facts worth comparing across hosts: volatile ones (hostname, uptime...) left out."""
    facts: dict[str, Any] = {k: v for k, v in hello.get("facts", {}).items() if k not in VOLATILE_FACTS}
    agent = facts.pop("agent", {})
    facts["agent"] = {"version": agent.get("version"), "build": hello.get("build"), "protocol": hello.get("protocol")}
    if hello.get("installed"):
        facts["agent"]["installed"] = hello["installed"]
    facts["distro"] = facts.get("distro", {}).get("pretty_name") or facts.get("distro", {}).get("id")
    facts["tools"] = {
        name: (tool.get("version") or "present") if tool.get("present") else None
        for name, tool in facts.get("tools", {}).items()
    }
    return facts


def _members(inventory: Any, group: str) -> list[str]:
    return [h.name for h in inventory.hosts.values() if group in h.groups]
