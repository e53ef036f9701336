"""Names an attacker controls before they reach a path or a tool's command line: module names
and build ids read from a dump's memory (crash `mod -s`, the debuginfod cache), and the
controller id an agent names its attach socket by."""

from __future__ import annotations

from pathlib import Path

import pytest

from crashfleet.agent.dumps.debuginfod import valid_build_id
from crashfleet.agent.dumps.modules import Plan
from tests.agentproc import PolicyAgent

GOOD_ID = "ba7ab1a96eb2281593d74c84e9a6af332e05173c"
HOSTILE = [
    "../../etc",
    "x; !sh",
    "a\nmod -S /",
    "a b",
    "$(id)",
    "`id`",
    "a\x00b",
    "é",
    "x" * 65,
    "-",
    "a\tb",
    "a|grep",
    "a>out",
    "a\rb",
    "",
]


def test_only_plain_module_names_with_hex_build_ids_reach_crash() -> None:
    listed = (
        [("qemu_fw_cfg", GOOD_ID)]
        + [(name, GOOD_ID) for name in HOSTILE if name != "-"]
        + [("virtio", bid) for bid in ["../../root", GOOD_ID + "\n", "XYZ", "", None, "g" * 40]]
    )
    plan = Plan(listed)
    assert plan.todo == [("qemu_fw_cfg", GOOD_ID)]
    assert len(plan.notes) == len(listed) - 1 and all(len(note) < 120 for note in plan.notes)


@pytest.mark.parametrize("build_id", ["../../etc", "ab/cd" * 4, GOOD_ID.upper(), "1234567", "a" * 129, "\x00" * 20])
def test_build_ids_that_could_name_another_path_are_not_build_ids(build_id: str) -> None:
    assert not valid_build_id(build_id)


@pytest.mark.parametrize(
    "key",
    [
        "../../../tmp/evil",
        "deadbeef/../../x",
        "DEADBEEFDEADBEEF",
        "dead beef 0001",
        "deadbeefdeadbeef\n",
        "a" * 65,
        "1234567",
        12345678,
    ],
)
def test_a_controller_id_that_is_not_hex_opens_no_socket(tmp_path: Path, key: object) -> None:
    agent = PolicyAgent(tmp_path)
    try:
        hello = agent.result("hello", controller=key)
        assert hello["lease"]["listening"] is False, hello
        assert not (agent.dir / "run").exists() or not list((agent.dir / "run").iterdir())
        assert not list(tmp_path.parent.glob("evil*")) and not (tmp_path / "x").exists()
        assert agent.stop() == 0
    finally:
        agent.kill()
