"""Consent before heavy actions, asked of the person through elicitation: the SDK client's elicitation
callback plays the person (accept, decline, cancel, a malformed or partial form) on a real `crashfleet
serve` over stdio, in both protocol eras (2026-07-28 asks with an InputRequiredResult the client answers
by calling again; 2025-11-25 sends elicitation/create mid-call); a client that cannot ask gets policy
consent_without_client. Every answer is in the audit log with who and when."""

from __future__ import annotations

import json
import secrets
import shlex
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.types import ElicitRequestParams, ElicitResult

from tests.e2e.conftest import (
    CRASHFLEET,
    LEGACY,
    MODERN,
    HttpServer,
    StdioServer,
    audit_entries,
    error_text,
    server_env,
    structured,
)
from tests.rig import Rig

pytestmark = [pytest.mark.ssh, pytest.mark.timeout(300)]

CAPTURE = {"pattern": "web01:web02", "filter": "port 443", "duration": 2, "interface": "lo"}
QUESTION = "capture `port 443` on web[01-02] for 2 s: approve?"
ENV = {"CRASHFLEET_CONSENT_HOSTS": "1"}  # two hosts are a crowd here


class Person:
    """The elicitation callback: the questions it was asked, and the next answer it gives."""

    def __init__(self) -> None:
        self.asked: list[ElicitRequestParams] = []
        self.answer = ElicitResult(action="accept", content={"approve": True})

    async def __call__(self, context: Any, params: ElicitRequestParams) -> ElicitResult:
        self.asked.append(params)
        return self.answer


@pytest.fixture(scope="module", params=[LEGACY, MODERN])
def asked(request: pytest.FixtureRequest, rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    person = Person()
    home = tmp_path_factory.mktemp("consent")
    server = StdioServer(request.param, rig, home, client={"elicitation_callback": person}, **ENV)
    yield server, person, home
    server.close()


def consents(home: Path) -> list[dict[str, Any]]:
    return [e for e in audit_entries(home) if e["method"] == "consent"]


def agent_calls(home: Path, method: str) -> list[str]:
    return [e["host"] for e in audit_entries(home) if e["method"] == method]


def test_accept_asks_the_exact_scope_then_does_it(asked: Any) -> None:
    server, person, home = asked
    person.answer = ElicitResult(action="accept", content={"approve": True})
    before = len(person.asked)
    started = structured(server.call("capture_start", CAPTURE))
    assert len(person.asked) == before + 1, "asked once"
    question = person.asked[-1]
    assert question.message.splitlines()[0] == QUESTION, question.message
    assert "over consent_hosts (1)" in question.message, question.message
    assert question.requested_schema["required"] == ["approve"], question.requested_schema
    assert sorted(agent_calls(home, "capture.start"))[-2:] == ["web01", "web02"], "the capture did not start"
    if started.get("job_id"):
        server.call("capture_stop", {"job_id": started["job_id"]})
    [*_, entry] = consents(home)
    assert entry["outcome"] == "approved" and entry["host"] == "web[01-02]" and entry["ts"] > 0, entry
    assert entry["who"].startswith("stdio:") and entry["params"]["question"] == QUESTION, entry
    assert entry["params"]["client"] and entry["params"]["tool"] == "capture_start", entry


@pytest.mark.parametrize(
    ("answer", "outcome", "note"),
    [
        (ElicitResult(action="decline"), "declined", None),
        (ElicitResult(action="cancel"), "cancelled", None),
        (ElicitResult(action="accept", content={"approve": False}), "declined", None),
        (ElicitResult(action="accept", content={"approve": "yes"}), "declined", "malformed"),
        (ElicitResult(action="accept", content={}), "declined", "malformed"),
        (ElicitResult(action="accept", content={"approve": True, "also": "rm -rf"}), "declined", "malformed"),
    ],
    ids=["decline", "cancel", "approve-false", "malformed", "partial", "extra-field"],
)
def test_anything_but_a_clear_yes_is_a_no(asked: Any, answer: ElicitResult, outcome: str, note: str | None) -> None:
    server, person, home = asked
    person.answer = answer
    starts = len(agent_calls(home, "capture.start"))
    refused = error_text(server.call("capture_start", CAPTURE))
    assert refused.startswith(f"not done: the person {outcome} \u201c{QUESTION}\u201d"), refused
    assert len(agent_calls(home, "capture.start")) == starts, "a capture started without a yes"
    [*_, entry] = consents(home)
    assert entry["outcome"] == outcome and (note is None or note in entry["params"]["note"]), entry


def test_each_heavy_action_names_its_own_scope(asked: Any) -> None:
    server, person, _ = asked
    person.answer = ElicitResult(action="decline")
    error_text(server.call("profile_run", {"pattern": "web03", "hz": 999, "duration": 5}))
    assert person.asked[-1].message.startswith(
        "sample every CPU's kernel stack at 999 Hz on web03 for 5 s: approve?"
    ), person.asked[-1].message
    error_text(server.call("crash_open", {"host": "web04", "live": True}))
    assert person.asked[-1].message.startswith("read the live kernel memory of web04"), person.asked[-1].message
    long = dict(CAPTURE, pattern="web05", duration=600)
    error_text(server.call("capture_start", long))
    assert "600 s, over consent_seconds (120)" in person.asked[-1].message, person.asked[-1].message


def test_below_the_thresholds_nobody_is_asked(asked: Any) -> None:
    server, person, _ = asked
    before = len(person.asked)
    profiled = structured(server.call("profile_run", {"pattern": "web01", "hz": 49, "duration": 1}))
    assert profiled["summary"]["ok"] == 1 and len(person.asked) == before, profiled


@pytest.mark.parametrize("version", [LEGACY, MODERN])
def test_a_client_that_cannot_ask_is_refused_with_the_command_to_run_instead(
    version: str, rig: Rig, tmp_path: Path
) -> None:
    server = StdioServer(version, rig, tmp_path / "home", **ENV)
    try:
        refused = error_text(server.call("capture_start", CAPTURE))
    finally:
        server.close()
    command = "crashfleet capture web01:web02 -d 2 --interface lo --filter 'port 443'"
    assert "this client cannot ask" in refused and refused.endswith(command), refused
    assert not agent_calls(tmp_path / "home", "capture.start")
    [entry] = consents(tmp_path / "home")
    assert entry["outcome"] == "refused" and "consent_without_client=refuse" in entry["params"]["note"], entry


def test_policy_allow_lets_a_client_that_cannot_ask_go_ahead(rig: Rig, tmp_path: Path) -> None:
    server = StdioServer(LEGACY, rig, tmp_path / "home", CRASHFLEET_CONSENT_WITHOUT_CLIENT="allow", **ENV)
    try:
        started = structured(server.call("capture_start", CAPTURE))
        if started.get("job_id"):
            server.call("capture_stop", {"job_id": started["job_id"]})
    finally:
        server.close()
    assert sorted(agent_calls(tmp_path / "home", "capture.start")) == ["web01", "web02"]
    [entry] = consents(tmp_path / "home")
    assert entry["outcome"] == "allowed", entry


def test_the_command_a_refusal_names_runs_from_a_terminal(rig: Rig, tmp_path: Path) -> None:
    """`crashfleet call TOOL 'ARGS'`: the same tool, a person at a terminal, nobody asked."""
    server = StdioServer(LEGACY, rig, tmp_path / "home", **ENV)
    try:
        refused = error_text(server.call("profile_run", {"pattern": "web01", "hz": 199, "duration": 1}))
    finally:
        server.close()
    command = refused.rsplit("from a terminal instead: ", 1)[1]
    argv = shlex.split(command)
    assert argv[:3] == ["crashfleet", "call", "profile_run"], argv
    env = server_env(rig, tmp_path / "cli")
    ran = subprocess.run([str(CRASHFLEET), *argv[1:]], env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-2000:]
    answer = json.loads(ran.stdout)
    assert answer["summary"]["ok"] == 1 and answer["hz"] == 199 and answer["profile"]["samples"] > 0, answer


@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_over_http_too(mode: str, http_servers: Callable[..., HttpServer]) -> None:
    """2025-11-25 asks over the POST's event stream, 2026-07-28 with an InputRequiredResult."""
    server = http_servers(secrets.token_urlsafe(24), **ENV)
    person = Person()
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {server.token}"})
    transport = streamable_http_client(server.url, http_client=http)
    async with http, Client(transport, mode=mode, elicitation_callback=person) as client:
        person.answer = ElicitResult(action="decline")
        declined = await client.call_tool("capture_start", CAPTURE)
        person.answer = ElicitResult(action="accept", content={"approve": True})
        started = structured(await client.call_tool("capture_start", CAPTURE))
        if started.get("job_id"):
            await client.call_tool("capture_stop", {"job_id": started["job_id"]})
    assert [p.message.splitlines()[0] for p in person.asked] == [QUESTION, QUESTION]
    assert error_text(declined).startswith("not done: the person declined"), declined
    assert [e["outcome"] for e in consents(server.home)] == ["declined", "approved"]
    assert sorted(agent_calls(server.home, "capture.start")) == ["web01", "web02"]
