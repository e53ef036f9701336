"""Incident playbooks as MCP prompts: the tools in the order an expert uses them, and what to look for."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from mcp import MCPError
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt, PromptArgument
from mcp.types import INVALID_PARAMS

from .icon import icons


@dataclass(frozen=True)
class Playbook:
    name: str
    title: str
    description: str
    arguments: tuple[tuple[str, str, bool], ...]  # (name, description, required)
    steps: tuple[str, ...]  # each names the tool it runs first
    tools: tuple[str, ...]  # the tools in the order the steps use them

    def render(self, args: dict[str, str]) -> str:
        heading = self.title
        for arg, value in args.items():  # "Kernel panics on PATTERN" -> "Kernel panics on web"
            heading = re.sub(rf"\b{arg.upper()}\b", value.replace("\\", "\\\\"), heading)  # a literal replacement
        lines = [f"# {heading}", "", "Work through these steps with the crashfleet tools, in this order:", ""]
        lines += [f"{i}. {step.format(**args)}" for i, step in enumerate(self.steps, 1)]
        lines += [
            "",
            "Group hosts that answered the same; report the odd ones out by name. "
            "Quote what you saw (frames, counts, lines), not what you expected.",
        ]
        return "\n".join(lines)


PATTERN = ("pattern", "Ansible host pattern (all, web, web:&prod, ~regex)", True)
PLAYBOOKS = (
    Playbook(
        "kernel_panics",
        "Kernel panics on PATTERN",
        "Find crash dumps, triage them, explain the largest group.",
        (PATTERN,),
        (
            "`dumps_list` on `{pattern}`: which hosts have dumps, their kernels, and whether debuginfo matches.",
            "`crash_triage` on `{pattern}`: hosts grouped by crash title (KIND in CULPRIT) with the culprit "
            "frames and modules; note the group sizes, and any `job_id` (job_status gives the rest).",
            "`crash_open` as the largest group's `drill_down` says (its host and vmcore).",
            "`crash_run` with `bt` (the crashing task's stack), `log | tail -n 60`, and `dis -l` on the culprit.",
            "`analysis_scripts`, then `analysis_run` with `panic_summary` (and `dstate_stacks` for hangs).",
            "`session_close` the sessions; summarise: each title, its hosts and kernels, the culprit function "
            "and module, and what differs in the smaller groups.",
        ),
        ("dumps_list", "crash_triage", "crash_open", "crash_run", "analysis_scripts", "analysis_run", "session_close"),
    ),
    Playbook(
        "latency",
        "Latency on PATTERN",
        "Trace scheduler, block I/O and syscall latency; drill into outliers.",
        (PATTERN, ("duration", "seconds to trace each tool (default 10)", False)),
        (
            "`bpftrace_tools` on `{pattern}`: which vetted tools each host can run.",
            "`bpftrace_run` tool `runqlat` on `{pattern}` for {duration} s: run-queue latency merged "
            "fleet-wide; look at the tail buckets and at the outliers list.",
            "`bpftrace_run` tool `biolatency`: block I/O latency; a second mode at ms means slow disks.",
            "`bpftrace_run` tool `syscount`: which syscalls dominate on the outlier hosts.",
            "`fleet_run` `vmstat` (and `ps`) on the outlier hosts only: run queue, iowait, the busiest tasks.",
            "Summarise: the fleet's normal, which hosts are outliers, and on which resource they wait.",
        ),
        ("bpftrace_tools", "bpftrace_run", "fleet_run"),
    ),
    Playbook(
        "packet_loss",
        "Packets lost between A and B",
        "Capture on both ends at once and compare.",
        (
            ("a", "the sending host (inventory name)", True),
            ("b", "the receiving host (inventory name)", True),
            ("duration", "seconds to capture (default 30)", False),
        ),
        (
            "`capture_interfaces` on `{a}:{b}`: addresses, link state, default routes of both hosts.",
            "`capture_start` on `{a}:{b}` with mode `host` and target the other host's address, for "
            "{duration} s (one job, both ends).",
            "`capture_status` until both hosts are done (or `capture_stop`).",
            "`capture_summary` of the job: ranked problems (retransmits, resets, unanswered SYNs, ICMP), "
            "conversations, and loss between {a} and {b} (sent on one side, never seen on the other).",
            "`capture_packets` on the host and conversation the summary ranks first, to see the sequence.",
            "Summarise: direction and rate of the loss, which conversations, and where it happens.",
        ),
        ("capture_interfaces", "capture_start", "capture_status", "capture_summary", "capture_packets"),
    ),
    Playbook(
        "host_health",
        "Host health check",
        "Facts, kernel messages and sockets of hosts, grouped.",
        (("pattern", "Ansible host pattern (default all)", False),),
        (
            "`fleet_check` on `{pattern}`: reachability, kernel, tools, BTF; odd kernels stand out as groups.",
            "`fleet_run` `dmesg` on `{pattern}`: `output_search` it for `oom|BUG|error|fail|hung|segfault`.",
            "`fleet_run` `sockets` then `sockstat`: retransmits, many TIME-WAIT or orphans, full backlogs.",
            "`fleet_run` `df` and `free`: full filesystems, swap use.",
            "Summarise per group: healthy, or what is wrong and on which hosts.",
        ),
        ("fleet_check", "fleet_run", "output_search"),
    ),
)
DEFAULTS = {"duration": {"latency": "10", "packet_loss": "30"}, "pattern": {"host_health": "all"}}
BY_NAME = {p.name: p for p in PLAYBOOKS}


def check_arguments(name: str, given: dict[str, str] | None) -> dict[str, str]:
    """The arguments with defaults filled in; unknown or missing ones refused, naming the valid ones."""
    playbook = BY_NAME.get(name)
    if playbook is None:
        raise MCPError(INVALID_PARAMS, f"unknown prompt {name!r}; prompts: {', '.join(BY_NAME)}")
    valid = [arg for arg, _, _ in playbook.arguments]
    args = dict(given or {})
    unknown = sorted(set(args) - set(valid))
    if unknown:
        raise MCPError(
            INVALID_PARAMS,
            f"prompt {name!r} has no argument(s) {', '.join(unknown)}; valid arguments: {', '.join(valid)}",
        )
    missing = [arg for arg, _, required in playbook.arguments if required and not str(args.get(arg, "")).strip()]
    if missing:
        raise MCPError(
            INVALID_PARAMS,
            f"prompt {name!r} needs argument(s) {', '.join(missing)}; valid arguments: {', '.join(valid)}",
        )
    for arg in valid:
        args.setdefault(arg, DEFAULTS.get(arg, {}).get(name, ""))
    return args


def _renderer(playbook: Playbook) -> Callable[..., str]:
    def render(**args: str) -> str:
        return playbook.render(check_arguments(playbook.name, args))

    return render


def register(mcp: MCPServer) -> None:
    for playbook in PLAYBOOKS:
        arguments = [PromptArgument(name=n, description=d, required=r) for n, d, r in playbook.arguments]
        mcp.add_prompt(
            Prompt(
                name=playbook.name,
                title=playbook.title,
                description=playbook.description,
                arguments=arguments,
                fn=_renderer(playbook),
                icons=icons(),
                context_kwarg=None,
            )
        )
