"""What a crashed host keeps, laid out from the real crash fixtures (tests/dumps/crash_kinds.py):
the dump layouts kdump and people leave in /var/crash, a pstore record, a previous boot's kernel
log in a persistent journal (written by systemd's own journal-remote from a real serial console).

A scene names one source of the log: each reader of agent/dumps/triage.py is used by one.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.dumps.crash_kinds import CACHE, CrashKinds
from tests.dumps.fixture import link_file

JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
STAMP = "202612070312"  # kdump-tools' dir and file names


@dataclass(frozen=True)
class Scene:
    """`kind` crashed and left `layout`: elf (a vmcore and its vmlinux), kdump-dmesg (kdump-tools'
    dump and dmesg files), kdump (the dump alone), flat (makedumpfile's flattened file and the
    vmlinux), bare (an ELF vmcore without any vmlinux), old and old-bare (an ELF vmcore whose
    VMCOREINFO lacks the printk buffer's layout, as kernels before 5.10 write it, with or without
    its vmlinux), pstore, journal, or none (nothing kept)."""

    layout: str
    kind: str | None = None


def lay_out(scene: Scene, crash_dir: Path, ck: CrashKinds) -> Path | None:
    """The scene's dump files under crash_dir (the host's /var/crash); its dump's path, if any."""
    crash_dir.mkdir(parents=True, exist_ok=True)
    kind = scene.kind or ""
    if scene.layout in ("elf", "bare", "old", "old-bare"):
        dump = crash_dir / f"vmcore-{kind}"
        link_file(ck.vmcore(kind) if scene.layout in ("elf", "bare") else before_510(ck, kind), dump)
        if scene.layout in ("elf", "old"):
            link_file(ck.vmlinux, crash_dir / ck.vmlinux.name)
        return dump
    if scene.layout in ("kdump-dmesg", "kdump"):
        source = ck.kdump(kind)
        assert source is not None, f"{kind} has no kdump dump"
        dump = crash_dir / STAMP / f"dump.{STAMP}"
        link_file(source, dump)
        if scene.layout == "kdump-dmesg":
            log = ck.dmesg(kind)
            assert log is not None
            link_file(log, crash_dir / STAMP / f"dmesg.{STAMP}")
        return dump
    if scene.layout == "flat":
        dump = crash_dir / "vmcore.flat"
        link_file(ck.base.flat, dump)
        link_file(ck.vmlinux, crash_dir / ck.vmlinux.name)
        return dump
    return None


def pstore_dir(ck: CrashKinds, dest: Path, when: float | None = None) -> Path:
    """The real ramoops records (null_deref's oops and panic), times set to `when` as pstore
    stamps a record with its crash's time."""
    dest.mkdir(parents=True, exist_ok=True)
    for record in sorted(ck.pstore.glob("dmesg-*")):
        copy = dest / record.name
        copy.write_bytes(record.read_bytes())
        if when is not None:
            os.utime(copy, (when, when))
    return dest


def journal_dir(serial: Path, dest: Path, started: float, boot_id: str | None = None) -> Path:
    """A persistent journal holding one earlier boot whose kernel messages are `serial`'s lines
    (a real console log), written by systemd-journal-remote as a remote machine's journal is."""
    boot = boot_id or uuid.uuid4().hex
    dest.mkdir(parents=True, exist_ok=True)
    export = dest / "boot.export"
    with open(export, "wb") as out:
        for index, message in enumerate(_messages(serial)):
            fields = {
                "__CURSOR": f"s=0;i={index}",
                "__REALTIME_TIMESTAMP": str(int(started * 1e6) + index * 1000),
                "__MONOTONIC_TIMESTAMP": str(1_000_000 + index * 1000),
                "_BOOT_ID": boot,
                "_MACHINE_ID": "0" * 32,
                "_TRANSPORT": "kernel",
                "_HOSTNAME": "crashed",
                "PRIORITY": "4",
                "SYSLOG_IDENTIFIER": "kernel",
                "MESSAGE": message,
            }
            out.write(b"".join(f"{k}={v}\n".encode() for k, v in fields.items()) + b"\n")
    subprocess.run(
        [JOURNAL_REMOTE, f"--output={dest / 'remote.journal'}", str(export)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    export.unlink()
    return dest


def _messages(serial: Path) -> list[str]:
    """The kernel's messages: the console's lines without their time stamps and line-end noise."""
    text = serial.read_bytes().decode("utf-8", "replace").replace("\r", "")
    return [re.sub(r"^\[\s*\d+\.\d+\]\s?", "", line) for line in text.splitlines() if line.strip()]


def days_ago(days: float) -> float:
    return time.time() - days * 86400


def drgn_venv() -> Path:
    """A venv of the system's python3 holding the pinned PyPI drgn, as the Ansible role installs it
    at /opt/crashfleet/drgn (policy drgn_venv); built once per machine. Outside /root, which an
    isolated rig host does not see."""
    from crashfleet.agent.dumps.drgn_pick import PINNED

    venv = CACHE / "drgn-venv"
    with open(CACHE / ".drgn-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        python = venv / "bin" / "python3"
        if not python.exists() or f"drgn-{PINNED}" not in " ".join(p.name for p in venv.glob("lib/*/site-packages/*")):
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True, capture_output=True, timeout=300)
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", f"drgn=={PINNED}"],
                check=True,
                capture_output=True,
                timeout=600,
            )
    return venv


# The printk buffer's layout in VMCOREINFO, which kernels before 5.10 do not write: renamed (same
# length) in a copy, it is gone for a reader that looks for it, and the dump is otherwise intact.
PRINTK_LAYOUT = b"OFFSET(prb_desc_ring.descs)="


def before_510(ck: CrashKinds, kind: str) -> Path:
    """A copy of the kind's vmcore whose VMCOREINFO lacks the printk buffer's layout (built once):
    a kernel older than 5.10 cannot be booted here, its VMCOREINFO is what matters to the readers."""
    copy = CACHE / ck.release / "before-5.10" / f"{kind}.vmcore"
    with open(CACHE / ".before-510.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            data = ck.vmcore(kind).read_bytes()
            at = data.index(PRINTK_LAYOUT, 0, 1 << 20)  # the notes come first
            tmp = copy.with_name(copy.name + ".tmp")
            tmp.write_bytes(data[:at] + b"OFFSET(prb_desc_ring.xxxxx)=" + data[at + len(PRINTK_LAYOUT) :])
            os.replace(tmp, copy)
    return copy
