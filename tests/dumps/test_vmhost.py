"""The VM host (tests/rig/vmhost.py): Debian's cloud kernel and a minimal Debian in QEMU, over
real SSH. Its kernel has /proc/kcore (this machine's has not): live crash and drgn sessions,
the bundled scripts on a live kernel, and the agent's drgn pick on a Debian host."""

from __future__ import annotations

import json
import shlex
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
import yaml

from crashfleet.agent.dumps import drgn_pick
from crashfleet.agent.dumps.service import SCRIPTS
from crashfleet.controller.errors import UsageError
from crashfleet.controller.tools import dumps as d
from tests.dumps.fixture import Fixture
from tests.rig.vmhost import VMHost, running

pytestmark = [pytest.mark.ssh, pytest.mark.asyncio(loop_scope="module")]
HOST = "vm01"
LIVE_POLICY = {"live_kernel": True}


@pytest.fixture(scope="module")
def vm(dump_fixture: Fixture, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VMHost]:
    with running(dump_fixture, tmp_path_factory.mktemp("vmhost")) as host:
        policy = shlex.quote(json.dumps(LIVE_POLICY))
        done = host.ssh(
            f"mkdir -p /etc/crashfleet && echo {policy} > /etc/crashfleet/agent-policy.json && "
            "chmod 644 /etc/crashfleet/agent-policy.json"
        )
        assert done.returncode == 0, done.stderr
        yield host


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def vrt(vm: VMHost, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    from crashfleet.controller.runtime import Runtime
    from crashfleet.controller.settings import Settings

    state = tmp_path_factory.mktemp("vmhost-state")
    inventory = state / "inventory.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        HOST: {
                            "ansible_host": "127.0.0.1",
                            "ansible_port": vm.port,
                            "ansible_user": "root",
                            "ansible_ssh_private_key_file": str(vm.image.key),
                            "ansible_python_interpreter": "/usr/bin/python3",
                        }
                    }
                }
            }
        )
    )
    settings = Settings(
        inventory=inventory, ssh_known_hosts=vm.known_hosts, audit_log=state / "audit.jsonl", host_deadline=300
    )
    rt = Runtime.create(settings, who="pytest-vmhost")
    yield rt
    await rt.close()


async def test_the_vm_host_is_another_kernel_with_kcore_and_a_current_drgn(vrt: Any, dump_fixture: Fixture) -> None:
    facts = await vrt.fleet.call(vrt.fleet.host(HOST), "facts")
    assert facts["kernel"] == dump_fixture.release and facts["kcore"] is True
    drgn = facts["tools"]["drgn"]
    assert drgn["python"] == drgn_pick.VENV + "/bin/python3" and drgn["version"] == drgn_pick.PINNED, drgn


async def test_live_session_crash_drgn_and_the_bundled_scripts(vrt: Any, vm: VMHost) -> None:
    opened = await d.crash_open(vrt, HOST, live=True)
    sid = opened.session.session_id
    try:
        assert opened.session.vmcore == "/proc/kcore" and opened.session.format == "live"
        assert "DUMPFILE: /proc/kcore (live)" in opened.summary.text and "cf-vmhost" in opened.summary.text
        if opened.session.crash_pid is None:  # crash 8.0.2 cannot read this live kernel: said, not hidden
            assert any("crash could not read the live kernel" in n for n in opened.notes), opened.notes
        else:
            ps = await d.crash_run(vrt, sid, "ps | grep -c sshd")
            assert int(ps.text.strip() or 0) >= 1, ps.text
        live = await d.drgn_run(
            vrt,
            sid,
            "bool(prog.flags & ProgramFlags.IS_LIVE), sorted({t.comm.string_().decode() for t in for_each_task(prog)})",
        )
        assert live.ok and live.value and live.value.startswith("(True,") and "sshd" in live.value, live
        for name in SCRIPTS:
            ran = await d.analysis_run(vrt, sid, name)
            assert ran.ok, (name, ran.error, ran.text[-2000:])
    finally:
        info = await d.session_close(vrt, sid)
    pids = [p for p in (info.crash_pid, info.drgn_pid) if p]
    assert pids, info
    for pid in pids:
        assert vm.ssh(f"kill -0 {pid}").returncode != 0, f"{pid} outlived session_close"


async def test_live_is_refused_by_a_host_policy_without_it(vrt: Any, vm: VMHost) -> None:
    """The host decides: with live_kernel removed from its policy, a new agent refuses."""
    assert vm.ssh("rm /etc/crashfleet/agent-policy.json").returncode == 0
    link = vrt.fleet.links.pop(HOST, None)  # the next call connects again: a new agent, the new policy
    if link is not None:
        await link.close()
    with pytest.raises(UsageError) as info:
        await d.crash_open(vrt, HOST, live=True)
    assert "live_kernel" in info.value.message
