"""controller/json_table.py: the private tables beside the job registry."""

from __future__ import annotations

import stat
from pathlib import Path

from crashfleet.controller import json_table


def test_a_saved_table_loads_back_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "jobs.json"
    json_table.save(path, [{"job_id": "J1", "hosts": ["a", "b"]}], "job registry")
    assert json_table.load(path, "job registry") == [{"job_id": "J1", "hosts": ["a", "b"]}]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["jobs.json"]  # no temporary file left


def test_a_missing_torn_or_foreign_table_loads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "tasks.json"
    assert json_table.load(path, "task table") == []
    for text in ('[{"task_id": "t1"', '{"task_id": "t1"}', "[1, 2]"):
        path.write_text(text)
        assert json_table.load(path, "task table") == [], text


def test_an_unwritable_place_is_logged_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    json_table.save(blocker / "jobs.json", [{"a": 1}], "job registry")  # its parent is a file
    assert blocker.read_text() == ""
