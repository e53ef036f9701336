"""The agent's refusal log: one line per refusal, params as a digest, rotated once past its cap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crashfleet.agent import audit
from crashfleet.agent.errors import AgentError


def test_refusals_are_lines_with_rule_and_digest_and_the_file_rotates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = audit.RefusalLog(str(tmp_path / audit.FILENAME))
    refusal = AgentError("quota_exceeded", "2 captures are running", rule="quota.captures")
    assert audit.is_refusal(refusal) and not audit.is_refusal(AgentError("unknown_job", "no job 'j9'"))
    log.record("capture.start", {"interface": "lo", "filter": "secret"}, refusal)
    [line] = (tmp_path / audit.FILENAME).read_text().splitlines()
    entry = json.loads(line)
    assert (entry["method"], entry["kind"], entry["rule"]) == ("capture.start", "quota_exceeded", "quota.captures")
    assert entry["params_sha256"] == audit.params_digest({"filter": "secret", "interface": "lo"})  # key order
    assert "secret" not in line and (tmp_path / audit.FILENAME).stat().st_mode & 0o777 == 0o600
    monkeypatch.setattr(audit, "MAX_BYTES", len(line))
    log.record("run", {}, refusal)  # the file is full: it moves to .1, the new line starts a fresh one
    assert len((tmp_path / (audit.FILENAME + ".1")).read_text().splitlines()) == 1
    assert json.loads((tmp_path / audit.FILENAME).read_text())["method"] == "run"
