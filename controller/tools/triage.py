"""crash_triage: which hosts of a fleet died of which bug, named from their kernel logs."""

from __future__ import annotations

from crashfleet.agent import protocol
from crashfleet.inventory import Host

from ..grouping import HostOutcome, group_outcomes
from ..models import FanoutResult
from ..progress import Progress
from ..registry import tool
from ..runtime import Runtime
from ..wiring import REMOTE_READ, Pattern
from . import triage_groups
from .common import fanned, output_ref
from .dumps import dump_dirs

TRIAGE_DEADLINE = 300.0  # one host: its log read by the cheapest source, crash's `log` at worst


@tool(
    "Triage crashes",
    "What killed each host (newest dump, else pstore or the previous boot's journal), hosts grouped by "
    "crash title (KIND in CULPRIT) with the culprit frames; crash_open drills down.",
    REMOTE_READ,
)
async def crash_triage(rt: Runtime, pattern: Pattern = "all", progress: Progress | None = None) -> FanoutResult:
    """Each host's crash named from its kernel log, read from the cheapest source (the dmesg
    kdump saved, the dump's printk buffer, crash's log last); hosts grouped by title."""

    async def one(host: Host) -> HostOutcome:
        answer: protocol.DumpTriage = await rt.fleet.call(host, protocol.DUMPS_TRIAGE, {"dirs": dump_dirs(host)})
        ref = output_ref(host.name, answer["output_id"]) if answer.get("output_id") else None
        return triage_groups.outcome(host.name, answer, ref)

    def assemble(outcomes: list[HostOutcome], elapsed: int, final: bool) -> FanoutResult:
        result = group_outcomes(outcomes, elapsed, rt.settings.page_chars, merge=triage_groups.merge)
        result.view = {"dumps": triage_groups.dumps(outcomes)}  # a view opens crash on any of them
        return result

    hosts = rt.fleet.match(pattern)
    return await fanned(rt, "crash_triage", pattern, hosts, one, assemble, deadline=TRIAGE_DEADLINE, progress=progress)


__all__ = ["crash_triage"]
