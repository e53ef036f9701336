"""The namespace lab (session-wide) and a controller runtime on it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import cmdline, descendants

from .netlab import HERE, NetLab, environment_problem

BIG_FILE_MB = 12


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetLab]:
    problem = environment_problem()
    if problem:
        pytest.fail(f"the capture lab cannot run here: {problem}")
    base = tmp_path_factory.mktemp("netlab")
    www = base / "www"
    www.mkdir()
    (www / "index.html").write_text("hello\n")
    with (www / "big.bin").open("wb") as handle:
        handle.write(b"\0" * (BIG_FILE_MB << 20))
    net = NetLab(base).up()
    try:
        net.spawn("db01", sys.executable, "-m", "http.server", "80", "--bind", "10.77.2.2", "--directory", str(www))
        net.spawn("db01", sys.executable, str(HERE / "dnsserver.py"), "serve", "10.77.2.2")
        net.spawn("db01", sys.executable, str(HERE / "dnsserver.py"), "serve", "10.77.2.3", "--silent")
        net.exec(
            "app01",
            "curl",
            "-s",
            "--retry",
            "20",
            "--retry-connrefused",
            "--retry-delay",
            "0",
            "-o",
            "/dev/null",
            "http://10.77.2.2/",
        )
        yield net
    finally:
        net.down()


@pytest.fixture
async def lab_rt(lab: NetLab, tmp_path: Path) -> AsyncIterator[Any]:
    from crashfleet.controller.runtime import Runtime
    from crashfleet.controller.settings import Settings

    settings = Settings(
        inventory=lab.inventory, ssh_known_hosts=lab.known_hosts, audit_log=tmp_path / "audit.jsonl", host_deadline=30
    )
    rt = Runtime.create(settings, who="pytest")
    yield rt
    await rt.close()


def tcpdumps(lab: NetLab) -> list[int]:
    """tcpdump processes below the lab's sshds (the agents' captures)."""
    roots = [p.pid for p in lab.procs[:2]]
    return [pid for pid in descendants(roots) if cmdline(pid).startswith(("tcpdump", "/usr/bin/tcpdump"))]


def uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")
