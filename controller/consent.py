"""Consent before heavy actions, asked of the person through MCP elicitation (consent_scope says
which calls and what to ask).

2026-07-28 asks inside the call (an InputRequiredResult the client answers by calling again with
its responses; the SDK seals our request_state); earlier versions send elicitation/create mid-call.
Only an accept whose form says approve=true proceeds: decline, cancel, and a malformed or partial
form are a no. A client that cannot ask gets policy consent_without_client: refuse (with the
command a person runs from a terminal instead) or allow. Every answer goes to the audit log.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from mcp.server.mcpserver import Context
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.types import CallToolResult, ElicitRequest, ElicitRequestFormParams, ElicitResult, InputRequiredResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from .consent_scope import Scope, scope
from .runtime import Runtime
from .wiring import error

KEY = "consent"  # our one input request's key
SCHEMA = {
    "type": "object",
    "properties": {"approve": {"type": "boolean", "title": "Approve", "description": "true: do it; false: do not"}},
    "required": ["approve"],
}
Verdict = InputRequiredResult | CallToolResult | None  # ask again, refused, or go ahead


async def ask(rt: Runtime, tool: str, args: dict[str, Any], ctx: Context[Any, Any]) -> Verdict:
    """None when the call may go ahead; else what to answer instead."""
    needed = await scope(rt, tool, args)
    if needed is None:
        return None
    if not _can_ask(ctx):
        return _without_client(rt, tool, needed, ctx)
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        answer = _given(ctx, needed)
        if answer is None:
            return _question(needed)
    else:
        try:
            answer = await ctx.session.elicit_form(_message(needed), SCHEMA, related_request_id=ctx.request_id)
        except NoBackChannelError:
            return _without_client(rt, tool, needed, ctx)
        except MCPError as exc:
            return _decided(rt, tool, needed, ctx, "declined", f"the client failed to ask: {exc.error.message}")
    return _judged(rt, tool, needed, ctx, answer)


def _can_ask(ctx: Context[Any, Any]) -> bool:
    """The client declared form elicitation (a bare `elicitation: {}` is form, as before modes)."""
    caps = ctx.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def _message(needed: Scope) -> str:
    return f"{needed.question}\n({needed.why})"


def _digest(needed: Scope) -> str:
    return hashlib.sha256(_message(needed).encode()).hexdigest()[:32]


def _question(needed: Scope) -> InputRequiredResult:
    request = ElicitRequest(params=ElicitRequestFormParams(message=_message(needed), requested_schema=SCHEMA))
    return InputRequiredResult(input_requests={KEY: request}, request_state=json.dumps({"asked": _digest(needed)}))


def _given(ctx: Context[Any, Any], needed: Scope) -> ElicitResult | None:
    """The answer to this very question (our sealed request_state names it), or None: ask."""
    responses = ctx.input_responses or {}
    try:
        asked = json.loads(ctx.request_state or "{}").get("asked")
    except (ValueError, AttributeError):
        asked = None
    answer = responses.get(KEY)
    if asked != _digest(needed) or not isinstance(answer, ElicitResult):
        return None
    return answer


def _judged(rt: Runtime, tool: str, needed: Scope, ctx: Context[Any, Any], answer: ElicitResult) -> Verdict:
    if answer.action == "accept":
        content = answer.content or {}
        approve = content.get("approve")
        if approve is True and set(content) == {"approve"}:
            return _decided(rt, tool, needed, ctx, "approved")
        if approve is False and set(content) == {"approve"}:
            return _decided(rt, tool, needed, ctx, "declined")
        return _decided(rt, tool, needed, ctx, "declined", f"malformed or partial answer {json.dumps(content)[:200]}")
    return _decided(rt, tool, needed, ctx, "declined" if answer.action == "decline" else "cancelled")


def _without_client(rt: Runtime, tool: str, needed: Scope, ctx: Context[Any, Any]) -> Verdict:
    if rt.settings.consent_without_client == "allow":
        return _decided(rt, tool, needed, ctx, "allowed", "the client cannot ask; consent_without_client=allow")
    _record(rt, tool, needed, ctx, "refused", "the client cannot ask; consent_without_client=refuse")
    return error(
        f"not done: crashfleet asks a person before this ({needed.question.removesuffix(': approve?')}; "
        f"{needed.why}), and this client cannot ask (no elicitation). A person can run it from a "
        f"terminal instead: {needed.command}"
    )


def _decided(rt: Runtime, tool: str, needed: Scope, ctx: Context[Any, Any], outcome: str, note: str = "") -> Verdict:
    _record(rt, tool, needed, ctx, outcome, note)
    if outcome in ("approved", "allowed"):
        return None
    said = f" ({note})" if note else ""
    return error(f"not done: the person {outcome} \u201c{needed.question}\u201d{said}")


def _record(rt: Runtime, tool: str, needed: Scope, ctx: Context[Any, Any], outcome: str, note: str) -> None:
    """Who asked (the controller's user, the client), when (the entry's ts), what, and the answer."""
    params = {"tool": tool, "question": needed.question, "why": needed.why, "client": _client(ctx)}
    if note:
        params["note"] = note
    if rt.fleet.audit is not None:
        rt.fleet.audit.record(needed.hosts, "consent", params, outcome)


def _client(ctx: Context[Any, Any]) -> str:
    client = ctx.session.client_params
    info = client.client_info if client is not None else None
    return f"{info.name} {info.version}" if info is not None else "unnamed client"
