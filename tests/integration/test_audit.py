"""Refusals are audited with the rule that refused them: by the controller, and by the agent in its own dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crashfleet.controller.errors import StoreRefused
from crashfleet.controller.runtime import Runtime
from crashfleet.controller.settings import Settings
from crashfleet.controller.tools.fleet import fleet_run
from tests.rig import Rig


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_a_refused_call_is_in_both_audit_logs_with_its_rule(
    rig: Rig, runtime: Runtime, rig_settings: Settings
) -> None:
    agent_log = rig.host("web01").agent_dir / "audit.jsonl"
    result = await fleet_run(runtime, "web01", "vmstat", duration=1000)  # the agent's default cap is 600 s
    assert result.summary.failed == 1 and "cap of 600" in (result.errors[0].message or ""), result
    [ours] = [e for e in lines(rig_settings.audit_log) if e["method"] == "run"]
    assert (ours["host"], ours["kind"], ours["rule"]) == ("web01", "policy_denied", "policy.duration")
    assert ours["params"]["duration"] == 1000 and ours["outcome"].startswith("error: duration 1000")
    theirs = [e for e in lines(agent_log) if e["params_sha256"] == ours["params_sha256"]]
    assert [(e["method"], e["kind"], e["rule"]) for e in theirs] == [("run", "policy_denied", "policy.duration")]
    assert "cap of 600" in theirs[0]["message"] and "duration" not in theirs[0]  # a digest, not the params

    before = len(lines(agent_log))
    with pytest.raises(StoreRefused):  # an error that is no refusal: the controller notes its kind only
        await runtime.fleet.call(runtime.fleet.host("web01"), "page", {"output_id": "0123456789"})
    [missing] = [e for e in lines(rig_settings.audit_log) if e["method"] == "page"]
    assert (missing["kind"], missing["rule"]) == ("unknown_output", None)
    assert len(lines(agent_log)) == before
