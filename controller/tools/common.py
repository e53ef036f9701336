"""Helpers shared by tools: output references and job results as host outcomes."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from crashfleet.agent import protocol

from ..errors import UsageError
from ..grouping import HostOutcome
from ..models import Page
from ..runtime import Runtime


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
