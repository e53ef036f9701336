"""Fold hosts that answered the same into one group, like ClusterShell's clubak -b."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ClusterShell.NodeSet import NodeSet

from .models import FanoutResult, Group, HostFailure, Status, Summary

STATUS_ORDER = {"ok": 0, "running": 1, "failed": 2, "timeout": 3, "unreachable": 4}
MAX_ERRORS = 20
MIN_SHARE = 400  # chars of output every group keeps, however many groups there are


@dataclass
class HostOutcome:
    """One host's end of a fan-out. `key` decides grouping (a hash of the full output)."""

    host: str
    status: Status
    key: str = ""
    output: str | None = None
    data: dict[str, Any] | None = None
    output_id: str | None = None
    next_cursor: str | None = None
    total_lines: int | None = None
    message: str | None = None
    hint: str | None = None
    stderr_tail: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def fold(hosts: Iterable[str]) -> str:
    return str(NodeSet.fromlist(list(hosts))) if hosts else ""


Merge = Callable[[list[HostOutcome]], dict[str, Any]]  # a group's data from its members' (default: the first's)


def group_outcomes(
    outcomes: list[HostOutcome], elapsed_ms: int, page_chars: int, merge: Merge | None = None
) -> FanoutResult:
    """The fan-out result: grouped, errors listed, fitted to the page budget."""
    summary = Summary(total=len(outcomes), elapsed_ms=elapsed_ms)
    buckets: dict[tuple[str, str], list[HostOutcome]] = {}
    for outcome in outcomes:
        setattr(summary, outcome.status, getattr(summary, outcome.status) + 1)
        buckets.setdefault((outcome.status, outcome.key), []).append(outcome)
    ordered = sorted(buckets.values(), key=lambda members: (STATUS_ORDER[members[0].status], -len(members)))
    groups = [_group(members, merge) for members in ordered]
    errors = [_failure(o) for o in outcomes if o.status not in ("ok", "running")]
    note = None
    if len(errors) > MAX_ERRORS:
        note = f"{len(errors) - MAX_ERRORS} more host errors not listed; narrow the pattern to see them"
        errors = errors[:MAX_ERRORS]
    _fit(groups, page_chars)
    return FanoutResult(summary=summary, groups=groups, errors=errors, note=note)


def _group(members: list[HostOutcome], merge: Merge | None) -> Group:
    first = members[0]
    output = first.output if first.output is not None else first.message
    return Group(
        hosts=fold(m.host for m in members),
        count=len(members),
        status=first.status,
        output=output,
        data=merge(members) if merge is not None and first.data is not None else first.data,
        next_cursor=first.next_cursor,
        total_lines=first.total_lines,
        output_ids=[m.output_id for m in members if m.output_id][:16],
    )


def _failure(outcome: HostOutcome) -> HostFailure:
    return HostFailure(
        host=outcome.host,
        status=outcome.status,
        message=outcome.message or "failed",
        hint=outcome.hint,
        stderr_tail=(outcome.stderr_tail or None) and outcome.stderr_tail[-800:],
    )


def _fit(groups: list[Group], page_chars: int) -> None:
    """Share the page budget among groups' outputs; a cut output keeps a cursor to page on."""
    with_output = [g for g in groups if g.output]
    if not with_output:
        return
    share = max(MIN_SHARE, page_chars // len(with_output))
    for group in with_output:
        assert group.output is not None
        if len(group.output) > share:
            cut = group.output.rfind("\n", 0, share)
            cut = cut if cut > share // 2 else share
            shown = group.output[:cut]
            group.output = (
                shown + "\n[... cut to fit the page budget: read it all with "
                "output_page(output_ids[0]) from the start, or output_search]"
            )
            group.next_cursor = None  # the agent's cursor would skip what was cut here
