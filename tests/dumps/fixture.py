"""Real vmcores for the dump tests: Debian's cloud kernel panicking in QEMU (TCG).

`python -m tests.dumps.fixture` builds (or reuses) them by hand. Everything is
cached under /var/cache/crashfleet-tests/vmcore/<kernel release>/, outside the
repo, and rebuilt when a file is missing. The kernel is resolved by package name
(linux-image-cloud-amd64), so the fixture follows Debian's archive.

Panics built (each an ELF dump written by QEMU's `dump-guest-memory`):
  sysrq     init writes `c` to /proc/sysrq-trigger (sysrq_handle_crash)
  initexit  init exits: "Attempted to kill init!" (do_exit -> panic)
each with the serial console log of its boot (`<panic>.serial.log`), and the sysrq dump in
makedumpfile's kdump-compressed (`sysrq.kdump`) and flattened (`sysrq.flat`) formats, and
cut short (`sysrq.truncated`, its first 64 MiB: a dump whose write was interrupted; crash's
full init fails on it, `--minimal` reads it).
Named processes run in the guest: cf-alpha, cf-beta, cf-gamma.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

CACHE = Path(os.environ.get("CRASHFLEET_VMCORE_CACHE", "/var/cache/crashfleet-tests/vmcore"))
META_PACKAGE = "linux-image-cloud-amd64"
PANICS = ("sysrq", "initexit")
NAMED = ("cf-alpha", "cf-beta", "cf-gamma")
BOOT_TIMEOUT = 180.0
BUSYBOX = "/bin/busybox"
TRUNCATE_AT = 64 << 20  # keeps the kernel image and the log buffer, loses the per-cpu areas (~246 MiB)

if TYPE_CHECKING:
    from crashfleet.agent.dumps.crash_session import CrashSession


@dataclass(frozen=True)
class Fixture:
    release: str
    dir: Path

    @property
    def vmlinux(self) -> Path:
        return self.dir / f"vmlinux-{self.release}"

    def vmcore(self, panic: str) -> Path:
        return self.dir / f"{panic}.vmcore"

    def serial(self, panic: str) -> Path:
        """The guest's serial console of the boot that made `panic`'s vmcore: its kernel log as
        a console shows it (what the oops titles are tested on)."""
        return self.dir / f"{panic}.serial.log"

    @property
    def kdump(self) -> Path:
        return self.dir / "sysrq.kdump"

    @property
    def flat(self) -> Path:
        return self.dir / "sysrq.flat"

    @property
    def truncated(self) -> Path:
        return self.dir / "sysrq.truncated"

    def crash_session(self, workdir: Path) -> CrashSession:
        """crash 8.0.2 on the sysrq dump as the agent drives it, with no sandbox and no agent in
        front (not started yet)."""
        from crashfleet.agent.dumps.crash_session import CrashSession
        from crashfleet.agent.jobs import _clean_env

        return CrashSession(
            shutil.which("crash") or "crash", str(self.vmlinux), str(self.vmcore("sysrq")), str(workdir), _clean_env()
        )


def release() -> str:
    """The current cloud kernel release, e.g. 6.1.0-56-cloud-amd64, from the meta package."""
    out = _run(["apt-cache", "depends", META_PACKAGE]).decode()
    match = re.search(r"Depends: linux-image-(\S+-cloud-amd64)\b", out)
    if not match:
        raise RuntimeError(f"cannot resolve the kernel behind {META_PACKAGE}: {out[:300]!r}; run apt-get update")
    return match.group(1)


def ensure(rel: str | None = None) -> Fixture:
    """The fixture for `rel` (default: current), built once per machine under a lock."""
    rel = rel or release()
    fx = Fixture(rel, CACHE / rel)
    fx.dir.mkdir(parents=True, exist_ok=True)
    with open(fx.dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test sessions wait for one builder
        if not fx.vmlinux.exists() or not (fx.dir / "vmlinuz").exists():
            _fetch_kernel(fx)
        for panic in PANICS:
            if not fx.vmcore(panic).exists() or not fx.serial(panic).exists():
                _build_dump(fx, panic)
        if not fx.kdump.exists() or not fx.flat.exists():
            _build_kdump(fx)
        if not fx.truncated.exists():
            _truncate(fx.vmcore("sysrq"), fx.truncated, TRUNCATE_AT)
        (fx.dir / "manifest.json").write_text(
            json.dumps({"release": rel, "vmlinux": str(fx.vmlinux), "panics": list(PANICS), "named": list(NAMED)})
        )
    return fx


def dbg_deb(fx: Fixture) -> Path:
    """The kernel's -dbg .deb itself (~283 MB; what a debuginfod server indexes), kept beside the
    fixture in its own dir so a server pointed there sees nothing else."""
    dest = fx.dir / "debs" / f"linux-image-{fx.release}-dbg.deb"
    with open(fx.dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not dest.exists():
            dest.parent.mkdir(exist_ok=True)
            with tempfile.TemporaryDirectory(dir=fx.dir) as tmp:
                _run(["apt-get", "download", "-q", f"linux-image-{fx.release}-dbg"], cwd=tmp)
                os.replace(next(Path(tmp).glob("*.deb")), dest)
    return dest


def _fetch_kernel(fx: Fixture) -> None:
    """apt-get download the image and -dbg packages; keep only the three files we need."""
    with tempfile.TemporaryDirectory(dir=fx.dir) as tmp:
        image, dbg = f"linux-image-{fx.release}", f"linux-image-{fx.release}-dbg"
        _run(["apt-get", "download", "-q", image, dbg], cwd=tmp)
        debs = {p.name.split("_")[0]: p for p in Path(tmp).glob("*.deb")}
        _extract(
            debs[image],
            {
                f"./boot/vmlinuz-{fx.release}": fx.dir / "vmlinuz",
                f"./lib/modules/{fx.release}/kernel/drivers/firmware/qemu_fw_cfg.ko": fx.dir / "qemu_fw_cfg.ko",
            },
            tmp,
        )
        _extract(debs[dbg], {f"./usr/lib/debug/boot/vmlinux-{fx.release}": fx.vmlinux}, tmp)


def _extract(deb: Path, members: dict[str, Path], tmp: str) -> None:
    out = Path(tmp) / "x"
    out.mkdir(exist_ok=True)
    tar = subprocess.Popen(["tar", "-x", "-C", str(out), *members], stdin=subprocess.PIPE)
    _run(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=tar.stdin)
    assert tar.stdin is not None
    tar.stdin.close()
    if tar.wait() != 0:
        raise RuntimeError(f"tar could not extract {list(members)} from {deb}")
    for member, dest in members.items():
        os.replace(out / member, dest.with_name(dest.name + ".tmp"))
        os.replace(dest.with_name(dest.name + ".tmp"), dest)


INIT = """#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
insmod /qemu_fw_cfg.ko
for name in {named}; do "/bin/$name" & done
sleep 1
echo "crashfleet fixture: panic {panic}" > /dev/kmsg
{trigger}
"""
TRIGGERS = {
    "sysrq": "echo c > /proc/sysrq-trigger",
    "initexit": "exit 3",
}
WORKER = "#!/bin/sh\nwhile true; do sleep 1000; done\n"


def _initramfs(fx: Fixture, panic: str, work: Path) -> Path:
    root = work / "root"
    busybox_root(root, ("sh", "mount", "insmod", "sleep", "echo"))
    add_named(root)
    shutil.copy2(fx.dir / "qemu_fw_cfg.ko", root / "qemu_fw_cfg.ko")
    init = root / "init"
    init.write_text(INIT.format(named=" ".join(NAMED), panic=panic, trigger=TRIGGERS[panic]))
    init.chmod(0o755)
    return cpio(root, work / "initrd.cpio")


def busybox_root(root: Path, applets: tuple[str, ...]) -> None:
    """An initramfs tree with busybox-static and the applets its init calls."""
    for sub in ("bin", "proc", "sys", "dev", "tmp"):  # tmp: makedumpfile writes a temp file
        (root / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in applets:
        (root / "bin" / applet).symlink_to("busybox")


def add_named(root: Path) -> None:
    """/bin/cf-alpha... : a script's comm is its own name, so three recognisable tasks."""
    for name in NAMED:
        (root / "bin" / name).write_text(WORKER)
        (root / "bin" / name).chmod(0o755)


def cpio(root: Path, image: Path) -> Path:
    """`root` as a newc archive (an initramfs)."""
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    with open(image, "wb") as out:
        subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet"], input="\n".join(files).encode(), cwd=root, stdout=out, check=True
        )
    return image


def qemu_argv(fx: Fixture, initrd: Path, append: str, serial: Path, mem_mb: int = 256) -> list[str]:
    """One CPU, TCG, the fixture's kernel, the serial console to a file, VMCOREINFO in fw_cfg.
    Callers add -no-reboot, a monitor or disks as their boot needs."""
    return [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-m",
        str(mem_mb),
        "-smp",
        "1",
        "-display",
        "none",
        "-nodefaults",
        "-kernel",
        str(fx.dir / "vmlinuz"),
        "-initrd",
        str(initrd),
        "-append",
        append,
        "-device",
        "vmcoreinfo",
        "-serial",
        f"file:{serial}",
    ]


def _build_dump(fx: Fixture, panic: str, compressed: bool = False) -> Path:
    """Boot to the panic, then have QEMU write guest memory to a dump file."""
    dest = fx.kdump if compressed else fx.vmcore(panic)
    with tempfile.TemporaryDirectory(dir=fx.dir) as tmp:
        work = Path(tmp)
        initrd = _initramfs(fx, panic, work)
        out = work / "dump"
        serial = panic_dump(fx, initrd, "console=ttyS0 nokaslr panic=0 quiet loglevel=7", out, compressed=compressed)
        if compressed:  # QEMU writes makedumpfile's flattened form; -R rebuilds the real file
            with open(out, "rb") as flat:
                _run(["makedumpfile", "-R", str(out) + ".kdump"], stdin=flat)
            os.replace(out, fx.flat)
            out = Path(str(out) + ".kdump")
        os.replace(out, dest)
        if not compressed:
            shutil.copy2(serial, fx.serial(panic))
    return dest


def panic_dump(
    fx: Fixture,
    initrd: Path,
    append: str,
    dump: Path,
    *,
    mem_mb: int = 256,
    compressed: bool = False,
) -> Path:
    """Boot `initrd` until the kernel panics (its serial log says so), then have QEMU write guest
    memory to `dump` (ELF; makedumpfile's flattened form if `compressed`). Returns the serial log,
    beside `dump` (`<dump>.serial`)."""
    serial, monitor = dump.with_name(dump.name + ".serial"), dump.with_name(dump.name + ".monitor")
    argv = [*qemu_argv(fx, initrd, append, serial, mem_mb), "-no-reboot", "-monitor", f"unix:{monitor},server,nowait"]
    qemu = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        _wait_panic(qemu, serial)
        _monitor(monitor, [f"dump-guest-memory {'-z ' if compressed else ''}{dump}", "quit"])
        qemu.wait(60)
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
        monitor.unlink(missing_ok=True)
    return serial


def _build_kdump(fx: Fixture) -> None:
    _build_dump(fx, "sysrq", compressed=True)


def _truncate(src: Path, dest: Path, size: int) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    with open(src, "rb") as inp, open(tmp, "wb") as out:
        out.write(inp.read(size))  # 64 MiB in memory once, at build time
    os.replace(tmp, dest)


def _wait_panic(qemu: subprocess.Popen[bytes], serial: Path) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        text = serial.read_text(errors="replace") if serial.exists() else ""
        if "end Kernel panic" in text:
            time.sleep(0.5)
            return
        if qemu.poll() is not None:
            err = qemu.stderr.read().decode() if qemu.stderr else ""
            raise RuntimeError(f"qemu exited ({qemu.returncode}) before the panic: {err[-800:]}\n{text[-2000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"no kernel panic within {BOOT_TIMEOUT} s; serial log tail:\n{text[-2000:]}")


def _monitor(path: Path, commands: list[str]) -> None:
    """HMP commands on one connection, each waited for (dump-guest-memory is synchronous)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(300)
        sock.connect(str(path))
        _read_prompt(sock)
        for command in commands:
            sock.sendall(command.encode() + b"\n")
            _read_prompt(sock)  # after quit: until QEMU closes the socket


def _read_prompt(sock: socket.socket) -> bytes:
    data = b""
    while not data.rstrip().endswith(b"(qemu)"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _run(
    argv: list[str], cwd: str | None = None, stdout: object = subprocess.PIPE, stdin: object = subprocess.DEVNULL
) -> bytes:
    proc = subprocess.run(
        argv,
        cwd=cwd,
        stdout=stdout,
        stdin=stdin,  # type: ignore[call-overload]
        stderr=subprocess.PIPE,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-800:]}")
    return proc.stdout or b""


if __name__ == "__main__":
    started = time.monotonic()
    fixture = ensure(sys.argv[1] if len(sys.argv) > 1 else None)
    for entry in sorted(fixture.dir.iterdir()):
        print(f"{entry.stat().st_size:>12}  {entry}")
    print(f"ready in {time.monotonic() - started:.1f} s")


def link_file(src: Path, dest: Path) -> None:
    """Hard-link a fixture file into a test's dir (a copy across filesystems)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.copy2(src, dest)  # another filesystem: a copy, once per file
