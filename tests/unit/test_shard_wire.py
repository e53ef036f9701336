"""The front-worker wire (controller/shard_wire.py): an error raised in a worker is raised again in
the front as the same class with the same fields, hosts cross whole, and how many workers a fleet gets."""

from __future__ import annotations

import json

import pytest

from crashfleet.agent import protocol
from crashfleet.controller import errors
from crashfleet.controller.shard_wire import (
    control_frame,
    data_frame,
    error_from_wire,
    error_to_wire,
    host_from_wire,
    host_to_wire,
)
from crashfleet.controller.shards import SHARD_FROM, cores, worker_count
from crashfleet.inventory import Host


def again(exc: BaseException) -> BaseException:
    """Through the wire as the worker sends it: JSON text."""
    return error_from_wire(json.loads(control_frame({"error": error_to_wire(exc)}))["error"])


@pytest.mark.parametrize(
    "exc",
    [
        errors.HostError("auth failed", "check the key", kind="auth", stderr_tail="tail", exit_status=255, rule="r"),
        errors.Unreachable("cannot connect", "is it up?", kind="connect"),
        errors.ConnectLost("dropped mid-handshake", "retry", kind="connect_lost"),
        errors.LinkClosed("the agent ended", "see stderr", kind="agent_died", started_job="j7", exit_status=1),
    ],
)
def test_host_errors_cross_with_their_class_and_fields(exc: errors.HostError) -> None:
    back = again(exc)
    assert type(back) is type(exc) and str(back) == str(exc)
    assert isinstance(back, errors.HostError)
    for field in ("message", "hint", "kind", "stderr_tail", "exit_status", "rule", "status"):
        assert getattr(back, field) == getattr(exc, field), field
    if isinstance(exc, errors.LinkClosed):
        assert isinstance(back, errors.LinkClosed) and back.started_job == exc.started_job


def test_agent_errors_cross_as_their_kind_s_class() -> None:
    exc = errors.agent_error(
        "no such job", "jobs_list", protocol.UNKNOWN_JOB, {"kind": protocol.UNKNOWN_JOB, "rule": "x"}
    )
    back = again(exc)
    assert type(back) is errors.UnknownJob and isinstance(back, errors.AgentCallError)
    assert (back.message, back.hint, back.kind, back.data, back.rule) == (
        exc.message,
        exc.hint,
        exc.kind,
        exc.data,
        "x",
    )


def test_other_errors_keep_their_name_and_message() -> None:
    assert f"{type(again(ZeroDivisionError('a bug'))).__name__}: {again(ZeroDivisionError('a bug'))}" == (
        "ZeroDivisionError: a bug"
    )
    usage = again(errors.CrashfleetError("bad", "fix it"))
    assert type(usage) is errors.CrashfleetError and str(usage) == "bad (fix it)"


def test_hosts_cross_whole() -> None:
    host = Host("web01", {"ansible_host": "10.0.0.1", "ansible_port": 2222, "ansible_become": True}, ("web", "all"))
    back = host_from_wire(json.loads(json.dumps(host_to_wire(host))))
    assert (
        back == host and back.vars == host.vars and (back.address, back.port, back.become) == ("10.0.0.1", 2222, True)
    )


def test_frames_are_one_line_each() -> None:
    line = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {"text": "a\nb\x00c"}}).encode() + b"\n"
    frame = data_frame(b">", b"12", line)
    assert frame.count(b"\n") == 1 and frame.endswith(b"\n") and frame[1:].partition(b"\0") == (b"12", b"\0", line)
    assert control_frame({"op": "open", "text": "a\nb"}).count(b"\n") == 1


def test_worker_count_is_the_setting_else_one_per_core_for_a_large_fleet() -> None:
    assert worker_count(0, 10_000) == 0 and worker_count(3, 5) == 3
    assert worker_count(None, SHARD_FROM - 1) == 0
    assert worker_count(None, SHARD_FROM) == (cores() if cores() > 1 else 0)
