"""ansible/site.yml against isolated rig hosts: real ansible-playbook, real sshd, real sudo."""

from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from crashfleet.agent import buildinfo
from crashfleet.agent.dumps import drgn_pick
from crashfleet.controller.bundle import agent_bundle
from crashfleet.controller.tools.fleet import fleet_check
from tests.helpers import cmdline, descendants
from tests.rig.files import pub
from tests.rig.namespace import upper

from .conftest import AGENT, ANSIBLE_BIN, REPO, Deployment, recap, snapshot, ssh_options

pytestmark = pytest.mark.ssh


def test_first_run_changes_the_hosts_and_the_second_changes_nothing(deployment: Deployment) -> None:
    first, second = deployment.runs
    assert first.returncode == 0, first.stdout[-3000:]
    assert second.returncode == 0, second.stdout[-3000:]
    for host in ("dep01", "dep02"):
        assert recap(first)[host]["changed"] >= 10 and recap(first)[host]["failed"] == 0
        assert recap(second)[host]["changed"] == 0, second.stdout[-3000:]


def test_the_hosts_got_the_agent_the_user_the_key_and_the_sudo_rule(deployment: Deployment) -> None:
    ns = deployment.rig.host("dep01").ns_dir
    assert upper(ns, AGENT).read_bytes() == deployment.zipapp.read_bytes()
    assert "crashfleet:" in upper(ns, "/etc/passwd").read_text()
    keys = upper(ns, "/var/lib/crashfleet/.ssh/authorized_keys").read_text()
    assert f'restrict,command="sudo -n /usr/bin/python3 {AGENT} serve --dir /var/lib/crashfleet/agent" ' in keys
    assert pub(deployment.controller_key).read_text().split()[1] in keys
    policy = upper(ns, "/etc/crashfleet/agent-policy.json")
    assert policy.stat().st_uid == 0 and policy.stat().st_mode & 0o022 == 0
    assert deployment.root("dep01", "findmnt -n -t tracefs /sys/kernel/tracing").stdout.strip()
    assert "tracefs /sys/kernel/tracing tracefs" in upper(ns, "/etc/fstab").read_text()
    drgn = deployment.root("dep01", "/opt/crashfleet/drgn/bin/python3 -c 'import drgn; print(drgn.__version__)'")
    assert drgn.stdout.strip() == drgn_pick.PINNED  # the role's pinned PyPI drgn, in its own venv


def test_the_real_machine_is_untouched(deployment: Deployment) -> None:
    """Everything happened inside the hosts' namespaces: not one file of this machine changed."""
    with pytest.raises(KeyError):
        pwd.getpwnam("crashfleet")
    assert not Path("/opt/crashfleet").exists() and not Path("/etc/sudoers.d/crashfleet").exists()
    assert snapshot() == deployment.machine_before


def test_ansible_lint_passes() -> None:
    done = subprocess.run(
        [str(ANSIBLE_BIN / "ansible-lint")],
        cwd=REPO / "ansible",
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{ANSIBLE_BIN}:{os.environ['PATH']}", "NO_COLOR": "1"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Passed" in done.stdout + done.stderr


def test_sudo_lists_only_the_agent_command(deployment: Deployment) -> None:
    listing = deployment.root("dep02", "sudo -l -U crashfleet").stdout
    rules = listing.split("may run the following commands", 1)[1].splitlines()[1:]
    assert [r.strip() for r in rules if r.strip()] == [
        f"(root) NOPASSWD: /usr/bin/python3 {AGENT} serve --dir /var/lib/crashfleet/agent"
    ]


async def test_fleet_check_starts_the_installed_agent_and_pushes_nothing(
    deployment: Deployment, deployed_runtime: Any
) -> None:
    result = await fleet_check(deployed_runtime, "dep01:dep02")
    assert result.summary.ok == 2, result.errors
    [group] = result.groups
    assert group.data["agent"] == {"version": "0.1.0", "build": agent_bundle().build, "protocol": 1, "installed": AGENT}
    assert group.data["uid"] == 0  # started through the sudo rule
    for host in ("dep01", "dep02"):  # no pushed copy anywhere on the host
        ns = deployment.rig.host(host).ns_dir
        assert not [p for p in ns.rglob("crashfleet-agent-*.pyz")]


def test_the_deployed_key_runs_no_shell_command(deployment: Deployment) -> None:
    h = deployment.rig.host("dep01")
    base = ["ssh", *ssh_options(deployment.rig), "-i", str(deployment.controller_key), "-p", str(h.port)]
    plain = subprocess.run(
        [*base, f"crashfleet@{h.address}", "id"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )
    assert "uid=" not in plain.stdout + plain.stderr  # sshd ran the agent, which saw EOF and left
    hello = '{"jsonrpc": "2.0", "id": 1, "method": "hello", "params": {}}\n'
    agent = subprocess.run(
        [*base, f"crashfleet@{h.address}", "sh -c id"], input=hello, capture_output=True, text=True, timeout=30
    )
    assert f'"build":"{agent_bundle().build}"' in agent.stdout.replace(" ", "") and "uid=" not in agent.stdout
    pty = subprocess.run(
        [*base, "-tt", f"crashfleet@{h.address}", "id"],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert "PTY allocation request failed" in pty.stderr and "uid=" not in pty.stdout


async def test_the_deployed_key_cannot_forward_ports(deployment: Deployment) -> None:
    h = deployment.rig.host("dep02")
    async with asyncssh.connect(
        h.address,
        port=h.port,
        username="crashfleet",
        known_hosts=str(deployment.rig.known_hosts),
        client_keys=[str(deployment.controller_key)],
        config=None,
    ) as conn:
        with pytest.raises(asyncssh.ChannelOpenError) as refused:
            await conn.open_connection(h.address, h.port)  # -L: direct-tcpip to the host's own sshd
        assert "prohibited" in refused.value.reason.lower() or refused.value.code == 1
        with pytest.raises(asyncssh.ChannelListenError):
            await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", 9)  # -R
        proc = await conn.create_process("id")  # while the agent starts instead of id
        proc.stdin.write('{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {}}\n')
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert '"id": 1' in line or '"id":1' in line
        proc.stdin.write_eof()
        await asyncio.wait_for(proc.wait(), 30)


async def test_an_outdated_agent_is_reported_with_the_playbook_that_fixes_it(
    deployment: Deployment, tmp_path: Path
) -> None:
    from crashfleet.controller.runtime import Runtime

    old = tmp_path / "old.pyz"
    _rebuild_with_build(deployment.zipapp, old, "0123456789abcdef")
    subprocess.run(
        [
            "ssh",
            *ssh_options(deployment.rig),
            "-i",
            str(deployment.rig.client_key),
            "-p",
            str(deployment.rig.port),
            f"root@{deployment.rig.host('dep01').address}",
            f"cat > {AGENT}",
        ],
        input=old.read_bytes(),
        check=True,
        timeout=30,
    )
    rt = Runtime.create(deployment.settings(tmp_path), who="pytest")
    try:
        result = await fleet_check(rt, "dep01")
    finally:
        await rt.close()
    [error] = result.errors
    assert "build 0123456789abcdef" in error.message and agent_bundle().build in error.message
    fix = f"ansible-playbook -i {deployment.inventory} ansible/site.yml --limit dep01"
    assert error.hint is not None and fix in error.hint
    rerun = deployment.playbook("--limit", "dep01")  # the command the hint gives
    assert rerun.returncode == 0 and recap(rerun)["dep01"]["changed"] == 1, rerun.stdout[-3000:]
    rt = Runtime.create(deployment.settings(tmp_path), who="pytest")
    try:
        assert (await fleet_check(rt, "dep01")).summary.ok == 1
    finally:
        await rt.close()
    _assert_no_agents(deployment)


def _rebuild_with_build(src: Path, dst: Path, build: str) -> None:
    """A copy of the zipapp that reports another build hash (as an older release would)."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename.endswith(f"agent/{buildinfo.BUILD_FILE}"):
                data = build.encode()
            new.writestr(info, data)


def _assert_no_agents(deployment: Deployment) -> None:
    listeners = [h.pid for h in deployment.rig.hosts if h.pid]
    left = [pid for pid in descendants(listeners) if "crashfleet-agent.pyz" in cmdline(pid)]
    assert not left, left


def test_unsupported_distribution_fails_naming_it(deployment: Deployment) -> None:
    """dep03 pretends to be Arch Linux (its own /etc/os-release, inside its namespace)."""
    deployment.root(
        "dep03",
        "mv /etc/os-release /etc/os-release.real && "
        'printf \'NAME="Arch Linux"\\nID=arch\\nPRETTY_NAME="Arch Linux"\\n\' > /etc/os-release && '
        "touch /etc/arch-release",
    )
    try:
        run = deployment.playbook("--limit", "dep03")
    finally:
        deployment.root("dep03", "rm -f /etc/os-release /etc/arch-release && mv /etc/os-release.real /etc/os-release")
    assert run.returncode != 0 and recap(run)["dep03"]["failed"] == 1
    assert "supports the Debian and RedHat families; dep03 runs Archlinux" in run.stdout, run.stdout[-3000:]
    assert recap(run)["dep03"]["changed"] == 0
    assert not upper(deployment.rig.host("dep03").ns_dir, AGENT).exists()


def test_missing_zipapp_says_how_to_build_it(deployment: Deployment, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "crashfleet-agent.pyz"
    run = deployment.playbook("--limit", "dep03", "-e", f"crashfleet_zipapp_src={missing}")
    assert run.returncode != 0 and recap(run)["dep03"]["changed"] == 0
    assert f"`crashfleet agent build -o {missing}`" in run.stdout, run.stdout[-3000:]
    assert not upper(deployment.rig.host("dep03").ns_dir, AGENT).exists()


async def test_a_rerun_after_a_partial_failure_completes(deployment: Deployment, tmp_path: Path) -> None:
    """A file where the user's home belongs stops the run half way; once it is gone a rerun finishes."""
    deployment.root("dep03", "mkdir -p /var/lib && : > /var/lib/crashfleet")
    broken = deployment.playbook("--limit", "dep03")
    assert broken.returncode != 0 and recap(broken)["dep03"]["failed"] == 1
    assert recap(broken)["dep03"]["changed"] >= 3  # packages, tracefs, the zipapp: done before the failure
    assert upper(deployment.rig.host("dep03").ns_dir, AGENT).exists()
    deployment.root("dep03", "rm /var/lib/crashfleet")
    fixed = deployment.playbook("--limit", "dep03")
    assert fixed.returncode == 0 and recap(fixed)["dep03"]["failed"] == 0, fixed.stdout[-3000:]
    from crashfleet.controller.runtime import Runtime

    rt = Runtime.create(deployment.settings(tmp_path), who="pytest")
    try:
        assert (await fleet_check(rt, "dep03")).summary.ok == 1
    finally:
        await rt.close()
