"""The sshd rig, checked with the real OpenSSH client (root + openssh-server needed)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.rig import Rig, RigError, RigHost, environment_problem, free_port, procs

SSH = "/usr/bin/ssh"
SFTP = "/usr/bin/sftp"
PROBLEM = environment_problem() or (None if Path(SSH).exists() else f"{SSH} missing")
needs_rig = pytest.mark.skipif(PROBLEM is not None, reason=str(PROBLEM))
REPO = Path(__file__).resolve().parents[2]


def client_opts(rig: Rig) -> list[str]:
    """Options that make ssh/sftp trust only the rig's known_hosts and use only its key."""
    return [
        "-F", "/dev/null",
        "-i", str(rig.client_key),
        "-o", f"UserKnownHostsFile={rig.known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=2",
    ]  # fmt: skip


def ssh(rig: Rig, host: RigHost, command: str = "true") -> subprocess.CompletedProcess[str]:
    """Run one command on a rig host with the real OpenSSH client."""
    argv = [SSH, *client_opts(rig), "-p", str(host.port), f"root@{host.address}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=20)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """Three hosts on a free port, so the test can run beside a benchmark rig on 2222."""
    with Rig(tmp_path_factory.mktemp("rig"), 3, port=free_port(3)) as r:
        yield r


def test_names_and_addresses_pad_to_three_digits_above_99(tmp_path: Path) -> None:
    hosts = Rig(tmp_path, 200, prefix="db").hosts
    assert [hosts[0].name, hosts[-1].name] == ["db001", "db200"]
    assert [hosts[0].address, hosts[-1].address] == ["127.0.0.11", "127.0.0.210"]
    assert hosts[0].agent_dir == tmp_path / "hosts" / "db001" / "agent"
    big = Rig(tmp_path, 500).hosts  # past 200 hosts, the next /24 of loopback
    assert [big[200].address, big[-1].address] == ["127.0.1.11", "127.0.2.110"]
    assert len({h.address for h in big}) == 500
    with pytest.raises(ValueError):
        Rig(tmp_path, 1001)


def test_load_without_rig_json_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(RigError, match="no rig"):
        Rig.load(tmp_path)


@pytest.mark.ssh
@needs_rig
class TestRunningRig:
    """One 3-host rig shared by these tests; each test leaves it all up again."""

    def test_files_describe_the_running_hosts(self, rig: Rig) -> None:
        assert [h.name for h in rig.hosts] == ["web01", "web02", "web03"]
        assert rig.hosts[0].address == "127.0.0.11"
        lines = rig.known_hosts.read_text().splitlines()
        assert len(lines) == 3
        assert lines[0].startswith(f"[127.0.0.11]:{rig.port} ssh-ed25519 AAAA")
        web02 = yaml.safe_load(rig.inventory.read_text())["all"]["children"]["web"]["hosts"]["web02"]
        assert web02 == {
            "ansible_host": "127.0.0.12",
            "ansible_port": rig.port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(rig.client_key),
            "crashfleet_agent_dir": str(rig.hosts[1].agent_dir),
        }
        assert rig.hosts[1].agent_dir.is_dir()
        state = json.loads((rig.base / "rig.json").read_text())
        assert [h["pid"] for h in state["hosts"]] == [h.pid for h in rig.hosts]
        assert all(h.pid and procs.runs_config(h.pid, h.config) for h in rig.hosts)

    def test_ansible_reads_the_inventory(self, rig: Rig) -> None:
        tool = Path(sys.executable).with_name("ansible-inventory")
        if not tool.exists():
            pytest.skip("ansible-core not installed")
        out = subprocess.run(
            [str(tool), "-i", str(rig.inventory), "--list"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        hostvars = json.loads(out.stdout)["_meta"]["hostvars"]
        assert hostvars["web03"]["ansible_host"] == "127.0.0.13"
        assert hostvars["web03"]["ansible_port"] == rig.port

    def test_every_host_accepts_the_client_key(self, rig: Rig) -> None:
        for h in rig.hosts:
            res = ssh(rig, h, "echo ok")
            assert (res.returncode, res.stdout) == (0, "ok\n"), res.stderr

    def test_sftp_subsystem_works(self, rig: Rig) -> None:
        h = rig.hosts[0]
        (h.agent_dir / "probe.txt").write_text("x")
        argv = [SFTP, *client_opts(rig), "-P", str(h.port), "-b", "-", f"root@{h.address}"]
        res = subprocess.run(argv, input=f"ls {h.agent_dir}\n", capture_output=True, text=True, timeout=20)
        assert res.returncode == 0, res.stderr
        assert "probe.txt" in res.stdout

    def test_up_again_keeps_the_running_listeners(self, rig: Rig) -> None:
        before = [h.pid for h in rig.hosts]
        assert [h.pid for h in rig.up().hosts] == before

    def test_rekey_breaks_host_key_checking_and_restore_fixes_it(self, rig: Rig) -> None:
        h = rig.hosts[1]
        rig.rekey_host(h.name)
        try:
            res = ssh(rig, h)
            assert res.returncode == 255
            assert "Host key verification failed" in res.stderr
            assert ssh(rig, rig.hosts[0]).returncode == 0  # the other hosts are untouched
        finally:
            rig.restore_host_key(h.name)
        res = ssh(rig, h)
        assert res.returncode == 0, res.stderr

    def test_stopped_host_refuses_connections(self, rig: Rig) -> None:
        h = rig.hosts[2]
        rig.stop_host(h.name)
        try:
            assert rig.state(h) == "down"
            res = ssh(rig, h)
            assert res.returncode == 255
            assert "Connection refused" in res.stderr
        finally:
            rig.start_host(h.name)
        assert rig.state(h) == "up"
        assert ssh(rig, h).returncode == 0

    def test_paused_host_hangs_until_resumed(self, rig: Rig) -> None:
        h = rig.hosts[0]
        rig.pause_host(h.name)
        try:
            assert rig.state(h) == "paused"
            t0 = time.monotonic()
            res = ssh(rig, h)
            assert res.returncode == 255
            assert "banner exchange" in res.stderr  # TCP connected, sshd never answered
            assert time.monotonic() - t0 >= 1.5
        finally:
            rig.resume_host(h.name)
        assert ssh(rig, h).returncode == 0

    def test_cli_status_and_up_see_the_running_rig(self, rig: Rig) -> None:
        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            argv = [sys.executable, "-m", "tests.rig", *args, "--dir", str(rig.base)]
            return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=30)

        status = cli("status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "3/3 up" in status.stdout
        up = cli("up", "3", "--port", str(rig.port))
        assert up.returncode == 0, up.stderr
        assert "already running" in up.stdout
        assert f"CRASHFLEET_SSH_KNOWN_HOSTS={rig.known_hosts}" in up.stdout


@pytest.mark.ssh
@needs_rig
def test_down_from_another_rig_object_kills_listeners_and_sessions(tmp_path: Path) -> None:
    rig = Rig(tmp_path, 2, port=free_port(2)).up()
    h = rig.hosts[0]
    argv = [SSH, *client_opts(rig), "-p", str(h.port), f"root@{h.address}", "sleep 60"]
    client = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        session = _wait_for_session(h)
        listeners = [x.pid for x in rig.hosts if x.pid is not None]
        Rig.load(tmp_path).down()  # as `python -m tests.rig down` would, without our Popen handles
        assert not [p for p in listeners + session if procs.alive(p)]
        assert client.wait(timeout=10) == 255  # the server side went away
    finally:
        client.kill()
        client.wait()
        rig.down()
    assert all(e["pid"] is None for e in json.loads(rig.state_file.read_text())["hosts"])


def _wait_for_session(h: RigHost) -> list[int]:
    """Pids below h's listener once the remote `sleep` runs (sshd children + the command)."""
    assert h.pid is not None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        below = procs.descendants([h.pid])
        if any(procs.cmdline(p).startswith("sleep") for p in below):
            return below
        time.sleep(0.05)
    raise AssertionError("remote sleep never started")
