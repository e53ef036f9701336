"""A connect storm: a new controller's first fleet_check of 200 real sshd hosts at once, on this
machine's two cores (every host's sshd, shell and agent share them with the controller, and
maybe with another test suite). Every host must end ok: the adaptive window lets no set-up fail
under the load. The deadline leaves room for a second suite on the same cores; how fast a cold
check is with the default deadline is bench/fanout.py's to say, not a test's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from crashfleet.controller.runtime import Runtime
from crashfleet.controller.settings import Settings
from crashfleet.controller.tools.fleet import fleet_check
from tests.conftest import wait_no_agents
from tests.rig import Rig, free_port

pytestmark = pytest.mark.ssh
STORM = 200
STORM_DEADLINE = 120.0  # 4x the default: the same storm while another suite loads both cores


@pytest.fixture(scope="module")
def storm_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    rig = Rig(tmp_path_factory.mktemp("storm"), STORM, port=free_port(STORM), prefix="s", python="/usr/bin/python3")
    rig.ready_timeout = 120.0  # 200 sshd starting on a loaded machine
    with rig:
        yield rig


async def test_cold_start_of_200_hosts_ends_all_ok(storm_rig: Rig, tmp_path: Path) -> None:
    settings = Settings(
        inventory=storm_rig.inventory,
        ssh_known_hosts=storm_rig.known_hosts,
        audit_log=tmp_path / "audit.jsonl",
        host_deadline=STORM_DEADLINE,
    )
    rt = Runtime.create(settings, who="pytest")
    try:
        result = await fleet_check(rt, "all")
    finally:
        await rt.close()
    assert result.summary.ok == STORM, [(e.host, e.status, e.message) for e in result.errors[:10]]
    # The same machine 200 times: one kernel in every group (a tool probe slowed past its limit by the
    # storm may split off a group whose version is unknown; the host is still ok).
    assert {g.data["kernel"] for g in result.groups if g.data} == {result.groups[0].data["kernel"]}  # type: ignore[index]
    assert sum(g.count for g in result.groups) == STORM
    await wait_no_agents(storm_rig.base, timeout=60)
