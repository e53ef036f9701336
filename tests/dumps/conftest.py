"""A dump fleet on the rig: each host gets its own dump dir (under /var/crash, which the
agent's default policy allows) through the `crashfleet_dump_dirs` inventory var.

web01-03: the sysrq panic (three layouts), web04: init exiting, web05: no dump,
web06: the sysrq dump as kdump-compressed and flattened files, and cut short. Dumps are hard links
to the cached fixture (one copy on disk), with the vmlinux linked beside each.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from tests.conftest import wait_no_agents
from tests.dumps.agentproc import start, zipapp  # noqa: F401 - fixtures for tests/dumps
from tests.dumps.fixture import Fixture, ensure, link_file
from tests.rig import Rig

CRASH_ROOT = Path("/var/crash")


@dataclass
class DumpFleet:
    fixture: Fixture
    root: Path
    dirs: dict[str, Path]
    inventory: Path
    paths: dict[str, Path]


@pytest.fixture(scope="session")
def dump_fixture() -> Fixture:
    return ensure()


@pytest.fixture(scope="module")
def dump_fleet(rig: Rig, dump_fixture: Fixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DumpFleet]:
    fx = dump_fixture
    CRASH_ROOT.mkdir(mode=0o700, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="crashfleet-tests-", dir=CRASH_ROOT))
    dirs = {h.name: root / h.name for h in rig.hosts}
    for d in dirs.values():
        d.mkdir()
    vmlinux = fx.vmlinux.name
    paths = {
        "web01": dirs["web01"] / "127.0.0.1-2026-11-21-03:12:40" / "vmcore",  # kdump-tools (RHEL)
        "web02": dirs["web02"] / "202611210312" / "dump.202611210312",  # kdump-tools (Debian)
        "web03": dirs["web03"] / "vmcore-sysrq",  # a plain file
        "web04": dirs["web04"] / "vmcore-initexit",
        "web06-kdump": dirs["web06"] / "vmcore.kdump",
        "web06-flat": dirs["web06"] / "vmcore.flat",
        "web06-cut": dirs["web06"] / "vmcore-cut",
    }
    sources = {
        "web01": fx.vmcore("sysrq"),
        "web02": fx.vmcore("sysrq"),
        "web03": fx.vmcore("sysrq"),
        "web04": fx.vmcore("initexit"),
        "web06-kdump": fx.kdump,
        "web06-flat": fx.flat,
        "web06-cut": fx.truncated,
    }
    for key, dest in paths.items():
        link_file(sources[key], dest)
        if not (dest.parent / vmlinux).exists():
            link_file(fx.vmlinux, dest.parent / vmlinux)
    (dirs["web05"] / "vmcore-dmesg.txt").write_text("not a dump\n")
    (dirs["web03"] / "notes.bin").write_bytes(b"\0" * 4096)  # not a dump: ignored by the scan
    inventory = tmp_path_factory.mktemp("dumps") / "inventory.yml"
    doc = yaml.safe_load(rig.inventory.read_text())
    for name, hostvars in doc["all"]["children"]["web"]["hosts"].items():
        hostvars["crashfleet_dump_dirs"] = [str(dirs[name])]
        hostvars["ansible_python_interpreter"] = sys.executable  # this venv's python has drgn
        # An agent dir of its own (still under the rig, for the leak check): its facts differ.
        hostvars["crashfleet_agent_dir"] = str(rig.host(name).dir / "agent-dumps")
    inventory.write_text(yaml.safe_dump(doc))
    yield DumpFleet(fx, root, dirs, inventory, paths)
    shutil.rmtree(root, ignore_errors=True)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def drt(dump_fleet: DumpFleet, rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    """One runtime for the module: crash takes seconds to open a dump, so sessions are shared."""
    from crashfleet.controller.runtime import Runtime
    from crashfleet.controller.settings import Settings

    state = tmp_path_factory.mktemp("dumps-state")
    settings = Settings(
        inventory=dump_fleet.inventory,
        ssh_known_hosts=rig.known_hosts,
        audit_log=state / "audit.jsonl",
        host_deadline=60,
    )
    rt = Runtime.create(settings, who="pytest-dumps")
    yield rt
    await rt.close()
    await wait_no_agents(rig.base, timeout=20)
