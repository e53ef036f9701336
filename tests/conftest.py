"""Shared fixtures: an isolated home for the controller, a real sshd rig, runtimes on it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import agent_pids
from tests.rig import Rig, environment_problem, free_port

RIG_SIZE = 6

# The controller reads ~/.config/crashfleet and CRASHFLEET_* variables: keep the developer's out.
_HOME = Path(tempfile.mkdtemp(prefix="crashfleet-test-home-"))
for _name in [k for k in os.environ if k.startswith("CRASHFLEET_")]:
    del os.environ[_name]
os.environ["XDG_CONFIG_HOME"] = str(_HOME / "config")
os.environ["XDG_STATE_HOME"] = str(_HOME / "state")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """RIG_SIZE real sshd hosts, web01..web06, on 127.0.0.11.. for the whole session."""
    problem = environment_problem()
    if problem:
        pytest.fail(f"the sshd rig cannot run here: {problem} (./dev test installs what it needs)")
    base = tmp_path_factory.mktemp("rig")
    with Rig(base, RIG_SIZE, port=free_port(RIG_SIZE)) as started:
        yield started


@pytest.fixture
def rig_settings(rig: Rig, tmp_path: Path) -> Any:
    from crashfleet.controller.settings import Settings

    return Settings(
        inventory=rig.inventory, ssh_known_hosts=rig.known_hosts, audit_log=tmp_path / "audit.jsonl", host_deadline=20
    )


@pytest.fixture
async def runtime(rig_settings: Any, rig: Rig) -> AsyncIterator[Any]:
    """A controller runtime on the rig; afterwards no agent of this rig may be left running."""
    from crashfleet.controller.runtime import Runtime

    rt = Runtime.create(rig_settings, who="pytest")
    yield rt
    await rt.close()
    await wait_no_agents(rig.base)


async def wait_no_agents(marker: Path | str, timeout: float = 10.0) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while agent_pids(str(marker)) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert not agent_pids(str(marker)), f"agents left running: {agent_pids(str(marker))}"
