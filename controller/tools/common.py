"""Helpers shared by tools: output references and job results as host outcomes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from crashfleet.agent import protocol
from crashfleet.inventory import Host

from .. import budget
from ..errors import UsageError
from ..fleet import HostOp
from ..grouping import HostOutcome, group_outcomes
from ..jobs import noted
from ..models import FanoutResult, Page
from ..progress import Progress
from ..runtime import Runtime

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=FanoutResult)


def output_ref(host: str, output_id: str) -> str:
    """The controller-wide output id: which host, which output there."""
    return f"{host}:{output_id}"


def split_ref(ref: str, what: str = "output_id", source: str = "a tool") -> tuple[str, str]:
    """HOST:ID (an output or a session id as tools return them) -> (host, id on that host)."""
    host, sep, local_id = ref.rpartition(":")
    if not sep or not host or not local_id:
        raise UsageError(f"{what} {ref!r} is not of the form HOST:ID", f"use a {what} exactly as {source} returned it")
    return host, local_id


def outcome_from_job(host: str, status: protocol.JobStatus) -> HostOutcome:
    """An agent job status (with its first page when finished) as this host's outcome."""
    ref = output_ref(host, status["output_id"])
    if status["state"] == "running":
        return HostOutcome(
            host,
            "running",
            key="running",
            output_id=ref,
            output=f"running for {status.get('elapsed', 0):.1f} s",
            extra={"job_id": status["job_id"]},
        )
    page: protocol.Page | dict[str, None] = status.get("page") or {}  # a running job has none
    ok = status["state"] != "aborted" and (status["state"] in ("done", "cancelled") or status.get("exit_status") == 0)
    key = f"{status.get('sha256')}:{status.get('exit_status')}:{status['state']}"
    message = None
    if status["state"] == "aborted":
        message = f"aborted: {status.get('stop_reason')}"
    elif not ok:
        message = f"exit status {status.get('exit_status')}: {(status.get('stderr_tail') or '').strip()[-300:]}"
    return HostOutcome(
        host,
        "ok" if ok else "failed",
        key=key,
        output=page.get("text"),
        output_id=ref,
        next_cursor=page.get("next_cursor"),
        total_lines=page.get("total_lines"),
        message=message,
        stderr_tail=status.get("stderr_tail") or None,
        extra={"job_id": status["job_id"], "state": status["state"]},
    )


def digest(data: Any) -> str:
    """A grouping key for structured answers: equal data, equal key."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def host_deadline(rt: Runtime, timeout: float | None) -> float:
    """The per-host deadline: the call's timeout, else CRASHFLEET_HOST_DEADLINE."""
    if timeout is None:
        return rt.settings.host_deadline
    if not 1 <= timeout <= 600:
        raise UsageError(f"timeout must be between 1 and 600 s, got {timeout}")
    return float(timeout)


def page_answer(host: str, page: protocol.Page) -> Page:
    """An agent's page of one of its outputs, as tools answer it."""
    return Page(
        output_id=output_ref(host, page["output_id"]),
        host=host,
        text=page["text"],
        start_line=page["start_line"],
        end_line=page["end_line"],
        total_lines=page["total_lines"],
        next_cursor=page.get("next_cursor"),
        finished=page["finished"],
        truncated=page.get("truncated", False),
    )


async def fanned(
    rt: Runtime,
    tool: str,
    pattern: str,
    hosts: list[Host],
    op: HostOp,
    assemble: Callable[[list[HostOutcome], int, bool], F],
    *,
    deadline: float | None = None,
    progress: Progress | None = None,
    ticking: float | None = None,
) -> F:
    """A fan-out's answer, within the call's time: hosts still working then go on as a job whose
    complete answer (assembled the same way) job_status gives; this answer has the rest.
    `assemble(outcomes, elapsed_ms, final)`: final when every host answered (budget.Assemble)."""
    outcomes, elapsed, rest = await rt.fleet.fan_out_within(
        hosts, op, budget=budget.left(), deadline=deadline, progress=progress, ticking=ticking
    )
    if rest is None:
        return assemble(outcomes, elapsed, True)
    waiting = rest

    async def complete() -> FanoutResult:
        return assemble(outcomes + await waiting.outcomes(), waiting.elapsed_ms(), True)

    def so_far(job_id: str) -> F:
        finished = waiting.finished()
        answered = {o.host for o in finished}
        still = [budget.still_working(host, job_id) for host in waiting.hosts if host not in answered]
        return assemble(outcomes + finished + still, waiting.elapsed_ms(), False)

    job = rt.jobs.later(tool, pattern, rest.hosts, complete(), so_far, rest.cancel)
    return noted(so_far(job.job_id), job)


async def single(
    rt: Runtime,
    tool: str,
    host: str,
    work: Callable[[Progress | None], Awaitable[M]],
    pending: Callable[[str], M],
    progress: Progress | None = None,
) -> M:
    """One operation's answer within the call's time; else `pending(job_id)`, and job_status gives
    its answer (as data of the host's group) when it ends. Its progress ends with the call."""
    answered = False

    async def report(done: float, total: int, message: str) -> None:
        if progress is not None and not answered:
            await progress(done, total, message)

    task, ended = await budget.run_within(work(report if progress is not None else None))
    if ended:
        return task.result()
    answered = True

    async def complete() -> FanoutResult:
        return budget.one_host_answer(host, (await task).model_dump(mode="json"))

    def so_far(job_id: str) -> FanoutResult:
        return group_outcomes([budget.still_working(host, job_id)], 0, rt.settings.page_chars)

    job = rt.jobs.later(tool, host, [host], complete(), so_far, task.cancel, single=True)
    return pending(job.job_id)
