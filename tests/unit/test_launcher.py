"""agent/launcher.py: which dirs code may run from, the hash check, and the stdin handshake, run for real."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crashfleet.agent import launcher
from crashfleet.agent.dumps.drgn_client import DrgnWorker
from crashfleet.agent.dumps.service import worker_source
from crashfleet.controller.bundle import agent_bundle
from crashfleet.controller.provision import _launcher_line, launcher_source

NOBODY = 65534
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="ownership checks need root to chown")


def safe_dir(path: Path) -> Path:
    path.mkdir(parents=True, mode=0o700)
    return path


def test_a_dir_only_root_can_write_is_fine_even_below_a_sticky_tmp(tmp_path: Path) -> None:
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    assert launcher.dir_problem(str(safe_dir(sticky / "agent"))) is None
    assert launcher.dir_problem(str(sticky / "agent" / "not" / "yet")) is None  # the rest is created by root


def test_others_can_write_it_or_a_dir_above_it(tmp_path: Path) -> None:
    group = safe_dir(tmp_path / "group")
    group.chmod(0o770)
    assert "writable by group or others (mode 0770)" in (launcher.dir_problem(str(group)) or "")
    sticky_itself = safe_dir(tmp_path / "sticky")
    sticky_itself.chmod(0o1777)  # sticky is fine above the dir, not for the dir itself
    assert "writable by group or others" in (launcher.dir_problem(str(sticky_itself)) or "")
    theirs = safe_dir(tmp_path / "theirs")
    os.chown(theirs, NOBODY, NOBODY)
    below = safe_dir(theirs / "agent")
    assert f"{theirs} is owned by" in (launcher.dir_problem(str(below)) or "")
    assert f"{theirs} is owned by" in (launcher.dir_problem(str(theirs / "missing")) or "")


def test_a_symlink_someone_else_owns_is_refused_one_root_made_is_followed(tmp_path: Path) -> None:
    target = safe_dir(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert launcher.dir_problem(str(link)) is None
    os.lchown(link, NOBODY, NOBODY)
    assert f"{link} is a symlink owned by" in (launcher.dir_problem(str(link)) or "")
    os.chown(target, NOBODY, NOBODY)
    (tmp_path / "to-theirs").symlink_to(target)  # root's own link, to a dir root does not own
    assert f"{target} is owned by" in (launcher.dir_problem(str(tmp_path / "to-theirs")) or "")


def test_verified_wants_our_bytes_in_a_file_nobody_else_can_write(tmp_path: Path) -> None:
    data = b"the agent"
    digest = hashlib.sha256(data).hexdigest()
    path = tmp_path / "crashfleet-agent-abc123.pyz"
    path.write_bytes(data)
    path.chmod(0o600)
    assert launcher.verified(str(path), digest)
    path.chmod(0o666)
    assert not launcher.verified(str(path), digest)
    path.chmod(0o600)
    assert not launcher.verified(str(path), "0" * 64)
    link = tmp_path / "link.pyz"
    link.symlink_to(path)
    assert not launcher.verified(str(link), digest)


def test_no_drgn_worker_file_exists_to_be_planted(tmp_path: Path) -> None:
    """The worker's source travels on its command line (python -I -c): nothing in the agent dir,
    planted or not, is ever run as the worker."""
    planted = tmp_path / "drgn_worker-000000000000.py"
    planted.write_text("open('/tmp/crashfleet-canary', 'w')\n")
    worker = DrgnWorker(sys.executable, worker_source(), "/dump", "/vmlinux", str(tmp_path), {})
    assert worker.argv[1:4] == ["-I", "-c", worker_source()] and worker.argv[4:] == ["/dump", "/vmlinux"]
    assert "def drop_privileges" in worker_source()
    assert sorted(p.name for p in tmp_path.iterdir()) == [planted.name]


class Launch:
    """The launcher as the controller starts it, over pipes, without SSH."""

    def __init__(self, directory: Path, data: bytes | None = None) -> None:
        bundle = agent_bundle()
        argv = [
            sys.executable,
            "-I",
            "-c",
            launcher.STAGE1,
            str(len(launcher_source())),
            str(directory),
            bundle.filename,
            bundle.sha256,
            str(len(bundle.data)),
        ]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.data = bundle.data if data is None else data
        self.send(launcher_source())

    def send(self, data: bytes) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def line(self) -> bytes:
        assert self.proc.stdout
        return self.proc.stdout.readline()

    def finish(self) -> tuple[int, str]:
        _, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, err.decode()


def test_the_launcher_asks_once_then_runs_the_agent_from_its_copy(tmp_path: Path) -> None:
    directory = tmp_path / "agent"
    first = Launch(directory)
    assert first.line() == launcher.NEED
    first.send(first.data)
    assert first.line() == launcher.OK
    first.send(b'{"jsonrpc":"2.0","id":1,"method":"hello"}\n')
    hello = json.loads(first.line())
    assert hello["result"]["build"] == agent_bundle().build
    assert hello["result"]["facts"]["agent"]["pid"] == first.proc.pid  # no second process
    assert first.finish()[0] == 0  # stdin closed: the agent exits
    copy = directory / agent_bundle().filename
    assert copy.read_bytes() == agent_bundle().data and copy.stat().st_mode & 0o777 == 0o600

    again = Launch(directory)
    assert again.line() == launcher.OK  # the copy's hash is ours: nothing is sent
    assert again.finish()[0] == 0


def test_bytes_that_do_not_match_the_hash_are_never_installed(tmp_path: Path) -> None:
    directory = tmp_path / "agent"
    bad = Launch(directory, data=b"\0" * len(agent_bundle().data))
    assert bad.line() == launcher.NEED
    bad.send(bad.data)
    status, err = bad.finish()
    assert status == launcher.BAD_UPLOAD and "does not match its sha256" in err
    assert not (directory / agent_bundle().filename).exists()


def test_an_unsafe_dir_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    theirs = safe_dir(tmp_path / "theirs")
    os.chown(theirs, NOBODY, NOBODY)
    refused = Launch(theirs / "agent")
    assert refused.line() == b""
    status, err = refused.finish()
    assert status == launcher.UNSAFE_DIR and f"refusing agent dir {theirs}/agent: {theirs} is owned by" in err
    assert not (theirs / "agent").exists()


class Lines:
    def __init__(self, *lines: bytes) -> None:
        self.lines = list(lines)

    async def readline(self) -> bytes:
        return self.lines.pop(0) if self.lines else b""


async def test_what_a_login_shell_prints_first_is_skipped() -> None:
    assert await _launcher_line(Lines(b"Welcome!\n", b"\n", launcher.OK)) == launcher.OK  # type: ignore[arg-type]
    assert await _launcher_line(Lines(b"noise\n")) == b""  # type: ignore[arg-type]
