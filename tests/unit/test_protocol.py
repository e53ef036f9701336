"""agent/protocol.py is whole: every error kind the agent sends is declared there, raised by its
constant, and becomes its own class on the controller; the methods and reply shapes match the agent."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path
from typing import Any

import pytest

from crashfleet.agent import protocol
from crashfleet.agent.errors import AgentError
from crashfleet.agent.jobs import JobManager
from crashfleet.agent.policy import DEFAULTS, Policy
from crashfleet.agent.rpc import Channel, Server
from crashfleet.agent.service import Agent
from crashfleet.agent.store import Store
from crashfleet.controller import errors
from crashfleet.controller.errors import KIND_CLASSES, AgentCallError
from crashfleet.controller.link import _call_error
from tests.unit.test_bundle import vermin_38

AGENT = Path(protocol.__file__).parent
RAISERS = ("AgentError", "StoreError")
PASSED_ON = ("kind", "code")  # another error's kind, re-raised: checked where that error was made


def agent_sources() -> list[Path]:
    return [p for p in sorted(AGENT.rglob("*.py")) if p.name != "protocol.py" and "scripts" not in p.parts]


def kind_expressions(tree: ast.AST) -> list[tuple[ast.expr, bool]]:
    """Where the agent names an error kind, and whether in a dict: the first argument of
    AgentError/StoreError, and the `kind` of a dict literal (an error inside a job status,
    rpc.py's own error data)."""
    found: list[tuple[ast.expr, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name in RAISERS and node.args:
                found.append((node.args[0], False))
        elif isinstance(node, ast.Dict):
            found += [
                (v, True) for k, v in zip(node.keys, node.values) if isinstance(k, ast.Constant) and k.value == "kind"
            ]
    return found


def protocol_kinds(node: ast.expr, where: str, in_dict: bool) -> list[str]:
    """The protocol kinds an expression names; fails on a bare string (or any other literal)."""
    if isinstance(node, ast.IfExp):
        return protocol_kinds(node.body, where, in_dict) + protocol_kinds(node.orelse, where, in_dict)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "protocol":
        value = getattr(protocol, node.attr, None)
        assert value in protocol.KINDS, f"{where}: protocol.{node.attr} is not a declared error kind"
        return [value]
    if isinstance(node, ast.Constant):
        raise AssertionError(f"{where}: the kind {node.value!r} is a bare literal, not a protocol constant")
    passed_on = (
        (isinstance(node, ast.Attribute) and node.attr in PASSED_ON)
        or (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == "kind")
        or isinstance(node, ast.Starred)  # regexbox: StoreError(*[code, message]) from its child
    )
    # A dict's `kind` may also be what a job, an output or a problem is: only literals are wrong there.
    assert passed_on or in_dict, f"{where}: the kind {ast.unparse(node)} is neither protocol.X nor passed on"
    return []


def raised_kinds() -> set[str]:
    kinds: set[str] = set()
    for path in agent_sources():
        for node, in_dict in kind_expressions(ast.parse(path.read_text(), str(path))):
            kinds.update(protocol_kinds(node, f"{path.relative_to(AGENT.parent)}:{node.lineno}", in_dict))
    return kinds


def test_the_agent_names_every_kind_by_its_protocol_constant() -> None:
    raised = raised_kinds()
    assert raised <= set(protocol.KINDS)
    assert set(protocol.KINDS) - raised == set(), "declared kinds the agent never sends"


def test_kinds_are_named_after_themselves_and_say_what_they_mean() -> None:
    for kind, meaning in protocol.KINDS.items():
        assert getattr(protocol, kind.upper()) == kind
        assert meaning and "\n" not in meaning


def test_every_kind_has_one_controller_class() -> None:
    listed = [kind for kinds in errors._GROUPS.values() for kind in kinds]
    assert len(listed) == len(set(listed)), "a kind in two groups"
    assert set(KIND_CLASSES) == set(protocol.KINDS)
    for cls in KIND_CLASSES.values():
        assert issubclass(cls, AgentCallError) and cls is not AgentCallError


def test_the_table_groups_what_callers_catch() -> None:
    assert KIND_CLASSES[protocol.UNKNOWN_JOB] is errors.UnknownJob
    assert KIND_CLASSES[protocol.JOB_LOST] is errors.JobLost
    assert issubclass(errors.UnknownJob, errors.JobGone) and issubclass(errors.JobLost, errors.JobGone)
    assert KIND_CLASSES[protocol.NO_DUMP] is errors.NoDump
    assert KIND_CLASSES[protocol.BAD_PARAMS] is errors.BadParams
    assert issubclass(errors.StoreRefused, errors.BadRequest) and issubclass(errors.BadParams, errors.BadRequest)
    for kind in (protocol.UNKNOWN_OUTPUT, protocol.BAD_CURSOR, protocol.STALE_CURSOR, protocol.BAD_REGEX):
        assert KIND_CLASSES[kind] is errors.StoreRefused
    assert KIND_CLASSES[protocol.COMPILE_ERROR] is errors.ProgramRefused


@pytest.mark.parametrize("kind", sorted(protocol.KINDS))
def test_an_agent_error_becomes_its_class_with_everything_kept(kind: str) -> None:
    sent = AgentError(kind, "it failed", hint="do this", rule="policy.x", output_id="abc").to_rpc()
    error = _call_error(json.loads(json.dumps(sent)))  # as it crosses the wire
    assert type(error) is KIND_CLASSES[kind]
    assert (error.kind, error.message, error.hint, error.rule) == (kind, "it failed", "do this", "policy.x")
    assert error.data["output_id"] == "abc"


def test_an_unknown_kind_stays_an_agent_call_error() -> None:
    assert type(_call_error({"message": "new", "data": {"kind": "from_a_newer_agent"}})) is AgentCallError
    assert type(_call_error({"code": -1, "message": "no data"})) is AgentCallError


def serve(lines: list[bytes], methods: dict[str, Any]) -> list[dict[str, Any]]:
    """What rpc.Server answers to these lines."""
    out = io.BytesIO()
    server = Server(Channel(out))
    for name, handler in methods.items():
        server.register(name, handler)
    server.serve(io.BytesIO(b"".join(lines)))
    server._pool.shutdown(wait=True)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def request(req_id: int, method: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": req_id, "method": method, "params": {}}).encode() + b"\n"


def lost(params: dict[str, Any]) -> None:
    raise AgentError(
        protocol.JOB_LOST, "job 7 ended with an earlier agent", hint="output_page reads it", output_id="o7"
    )


def bug(params: dict[str, Any]) -> None:
    raise ValueError("oops")


def test_rpc_errors_as_served_become_their_classes() -> None:
    lines = [b"not json\n", b"[1]\n", request(1, "lost"), request(2, "bug"), request(3, "nope")]
    replies = serve(lines, {"lost": lost, "bug": bug})
    by_id = {r.get("id"): r["error"] for r in replies}
    assert [type(_call_error(r["error"])) for r in replies if r.get("id") is None] == [errors.BadRequest] * 2
    gone = _call_error(by_id[1])
    assert isinstance(gone, errors.JobLost) and gone.data["output_id"] == "o7" and gone.hint == "output_page reads it"
    crashed = _call_error(by_id[2])
    assert isinstance(crashed, errors.AgentBug) and "ValueError" in crashed.data["traceback_tail"]
    assert isinstance(_call_error(by_id[3]), errors.BadRequest) and "lost" in (_call_error(by_id[3]).hint or "")


def make_agent(base: Path) -> Agent:
    store = Store(str(base / "store"))
    return Agent(
        str(base), store, JobManager(store, lambda method, params: None, str(base)), Policy(dict(DEFAULTS), None)
    )


def test_the_agent_serves_exactly_the_protocol_methods(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    assert list(agent.core_methods()) == list(protocol.CORE_METHODS)
    assert set(agent.methods()) - set(protocol.CORE_METHODS) == set(protocol.DOMAIN_METHODS)
    assert len(protocol.DOMAIN_METHODS) == len(set(protocol.DOMAIN_METHODS))


def keys(shape: Any) -> tuple[frozenset[str], frozenset[str]]:
    """(required keys, all keys) of a TypedDict."""
    return shape.__required_keys__, shape.__required_keys__ | shape.__optional_keys__


def fits(reply: dict[str, Any], shape: Any) -> bool:
    required, every = keys(shape)
    return required <= set(reply) <= every


def test_replies_have_their_shapes(tmp_path: Path) -> None:
    agent = make_agent(tmp_path)
    writer = agent.store.create("test", {})
    writer.write(b"one\ntwo\n")
    writer.close(exit_status=0)
    page = agent.page({"output_id": writer.output_id})
    assert set(page) == keys(protocol.Page)[1]
    found = agent.search({"output_id": writer.output_id, "pattern": "tw.", "context": 1})
    assert set(found) == keys(protocol.SearchResult)[1]
    assert set(found["matches"][0]) == keys(protocol.SearchMatch)[1]
    status = agent.run({"command": "uname", "wait": 10})
    assert status["state"] == "done" and fits(status, protocol.JobStatus) and fits(status["page"], protocol.Page)
    assert fits(agent.hello({}), protocol.Hello) and fits(agent.hello({})["facts"], protocol.Facts)


def test_protocol_runs_on_python_3_8() -> None:
    out = vermin_38(AGENT / "protocol.py")
    assert out.returncode == 0, out.stdout + out.stderr
