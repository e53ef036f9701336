"""Real kdump dumps: Debian's cloud kernel reserves crashkernel=, loads a capture kernel with
`kexec -p`, panics (sysrq), and the capture kernel's `makedumpfile -d 31` writes /proc/vmcore
the way kdump-tools does (lzo and zlib; this makedumpfile has no zstd), plus
`makedumpfile --dump-dmesg`. All in QEMU (TCG), with busybox initramfs images.

The capture kernel writes its files to a raw virtio disk at fixed offsets and prints their
sizes on the serial console; the builder cuts them out. Cached beside the vmcore fixture:
<cache>/<release>/kdump/{dump.lzo,dump.zlib,dmesg}. `python -m tests.dumps.kdump_fixture`.
`capture()` is the same machinery for another panic (tests/dumps/crash_kinds.py): its init's
trigger, extra files in the main initramfs, extra boot parameters.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.dumps.fixture import NAMED, Fixture, _run, add_named, busybox_root, cpio, ensure, qemu_argv

BOOT_TIMEOUT = 900.0  # two kernel boots and two makedumpfile runs under TCG on a busy machine
SLOT = 128 << 20  # bytes per file on the capture disk
FILES = ("dump.lzo", "dump.zlib", "dmesg")
# How the capture kernel writes each file, as kdump-tools does (its default is -c -d 31).
MAKEDUMPFILE = {"dump.lzo": "-l -d 31", "dump.zlib": "-c -d 31", "dmesg": "--dump-dmesg"}
SYSRQ = "echo c > /proc/sysrq-trigger"
VIRTIO = ("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk")
APPLETS = ("sh", "mount", "insmod", "sleep", "echo", "cat", "dd", "stat", "sync", "poweroff", "mkdir")
# Debian's kexec is linked against Xen's libraries (not installed here): fetched beside it.
XEN_LIBS = (
    "libxenmisc4.17",
    "libxencall1",
    "libxendevicemodel1",
    "libxenevtchn1",
    "libxenforeignmemory1",
    "libxengnttab1",
    "libxenhypfs1",
    "libxenstore4",
    "libxentoolcore1",
    "libxentoollog1",
    "libyajl2",
)
CRASHKERNEL = "192M"
GUEST_MB = 640


@dataclass(frozen=True)
class KdumpFixture:
    release: str
    dir: Path
    vmlinux: Path

    def dump(self, compression: str) -> Path:
        return self.dir / f"dump.{compression}"

    @property
    def dmesg(self) -> Path:
        return self.dir / "dmesg"


MAIN_INIT = """#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
insmod /qemu_fw_cfg.ko
for name in {named}; do "/bin/$name" & done
{setup}
/sbin/kexec -p /vmlinuz --initrd=/capture.cpio \\
  --append="console=ttyS0 nokaslr irqpoll nr_cpus=1 reset_devices panic=1" \\
  && echo "CF-KEXEC-LOADED $(cat /sys/kernel/kexec_crash_loaded)"
sleep 1
echo "crashfleet fixture: panic {label}" > /dev/kmsg
{trigger}
while true; do sleep 1000; done
"""
CAPTURE_INIT = """#!/bin/sh
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do insmod /$m.ko 2>/dev/null; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
{commands}
slot=0
for f in {files}; do dd if=/$f of=/dev/vda bs=1M seek=$slot conv=notrunc 2>/dev/null; slot=$((slot+{slot_mb})); done
sync
echo "CF-SIZES $(for f in {files}; do stat -c %s /$f; done)"
poweroff -f
"""


def ensure_kdump(fx: Fixture | None = None) -> KdumpFixture:
    fx = fx or ensure()
    kd = KdumpFixture(fx.release, fx.dir / "kdump", fx.vmlinux)
    kd.dir.mkdir(exist_ok=True)
    with open(kd.dir / ".lock", "w") as lock:  # its own lock: the vmcore fixture's users need not wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all((kd.dir / name).exists() for name in FILES):
            _build(fx, kd)
    return kd


def _build(fx: Fixture, kd: KdumpFixture) -> None:
    capture(fx, kd.dir)


def capture(
    fx: Fixture,
    dest: Path,
    *,
    label: str = "kdump",
    trigger: str = SYSRQ,
    setup: str = "",
    extra: Mapping[str, Path] | None = None,
    append: str = "",
    files: tuple[str, ...] = FILES,
) -> Path:
    """Boot with a capture kernel loaded, run `setup` then `trigger` in the main init (files of
    `extra` are in its initramfs, under their names; `append` joins its boot parameters), and
    keep what the capture kernel's makedumpfile wrote: dest/<file> for each of `files` (keys of
    MAKEDUMPFILE), and the serial console of both kernels (the returned dest/serial.log)."""
    with tempfile.TemporaryDirectory(dir=fx.dir) as tmp:
        work = Path(tmp)
        tools = _tools(fx, work)
        capture_image = cpio(_capture_root(work, tools, files), work / "capture.cpio")
        main_root = _main_root(fx, work, tools, capture_image, label, trigger, setup)
        for name, path in (extra or {}).items():
            shutil.copy2(path, main_root / name)
        main = cpio(main_root, work / "main.cpio")
        disk = work / "disk.raw"
        with open(disk, "wb") as handle:
            handle.truncate(SLOT * len(files))
        serial = work / "serial.log"
        _boot(fx, main, disk, serial, append)
        sizes = re.search(r"CF-SIZES ((?:\d+\s+){%d})" % len(files), serial.read_text(errors="replace"))
        if not sizes:
            raise RuntimeError(
                f"the capture kernel wrote no dump; serial log tail:\n{serial.read_text(errors='replace')[-3000:]}"
            )
        with open(disk, "rb") as handle:
            for slot, (name, size) in enumerate(zip(files, map(int, sizes.group(1).split()))):
                handle.seek(slot * SLOT)
                (work / name).write_bytes(handle.read(size))  # <= 128 MiB each, once at build time
                os.replace(work / name, dest / name)
        os.replace(serial, dest / "serial.log")
    return dest / "serial.log"


def _tools(fx: Fixture, work: Path) -> Path:
    """kexec (from kexec-tools, not installed: extracted) and the virtio modules of the kernel."""
    out = work / "tools"
    out.mkdir()
    debs = work / "debs"
    debs.mkdir()
    _run(["apt-get", "download", "-q", "kexec-tools", f"linux-image-{fx.release}", *XEN_LIBS], cwd=str(debs))
    for deb in debs.glob("*.deb"):
        _run(["dpkg-deb", "-x", str(deb), str(out)])
    return out


def _copy_with_libs(binary: Path, root: Path, lib_dir: Path | None = None) -> None:
    """A dynamic binary and the libraries ldd names (also from lib_dir), at the same paths under root."""
    dest = root / "sbin" / binary.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary, dest)
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib_dir)) if lib_dir else None
    listed = subprocess.run(["ldd", str(binary)], capture_output=True, env=env, check=True).stdout.decode()
    if "not found" in listed:
        raise RuntimeError(f"{binary} needs libraries we do not have:\n{listed}")
    for lib in re.findall(r"(/\S+\.so[.\d]*)", listed):
        if lib_dir and lib.startswith(str(lib_dir)):
            lib_target = "/lib/x86_64-linux-gnu/" + os.path.basename(lib)
        else:
            lib_target = lib
        target = root / lib_target.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(lib), target)


def _capture_root(work: Path, tools: Path, files: tuple[str, ...]) -> Path:
    root = work / "capture"
    busybox_root(root, APPLETS)
    _copy_with_libs(Path(shutil.which("makedumpfile") or "/usr/sbin/makedumpfile"), root)
    drivers = next(tools.glob("lib/modules/*/kernel/drivers"))
    for module in VIRTIO:
        found = list(drivers.rglob(f"{module}.ko"))
        if found:
            shutil.copy2(found[0], root / f"{module}.ko")
    init = root / "init"
    commands = "\n".join(f"makedumpfile {MAKEDUMPFILE[name]} /proc/vmcore /{name}" for name in files)
    init.write_text(
        CAPTURE_INIT.format(modules=" ".join(VIRTIO), commands=commands, files=" ".join(files), slot_mb=SLOT >> 20)
    )
    init.chmod(0o755)
    return root


def _main_root(fx: Fixture, work: Path, tools: Path, capture: Path, label: str, trigger: str, setup: str) -> Path:
    root = work / "main"
    busybox_root(root, APPLETS)
    _copy_with_libs(tools / "sbin" / "kexec", root, tools / "usr" / "lib" / "x86_64-linux-gnu")
    shutil.copy2(fx.dir / "vmlinuz", root / "vmlinuz")
    shutil.copy2(capture, root / "capture.cpio")
    shutil.copy2(fx.dir / "qemu_fw_cfg.ko", root / "qemu_fw_cfg.ko")
    add_named(root)
    init = root / "init"
    init.write_text(MAIN_INIT.format(named=" ".join(NAMED), setup=setup, label=label, trigger=trigger))
    init.chmod(0o755)
    return root


def _boot(fx: Fixture, initrd: Path, disk: Path, serial: Path, append: str = "") -> None:
    """Boot, panic, capture: QEMU exits when the capture kernel powers off (or fails)."""
    params = f"console=ttyS0 nokaslr panic=1 crashkernel={CRASHKERNEL} loglevel=7 {append}".strip()
    argv = [
        *qemu_argv(fx, initrd, params, serial, GUEST_MB),
        "-no-reboot",
        "-drive",
        f"file={disk},format=raw,if=virtio",
    ]
    qemu = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        qemu.wait(BOOT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(
            f"no capture within {BOOT_TIMEOUT:g} s; serial tail:\n{serial.read_text(errors='replace')[-3000:]}"
        ) from None
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()


if __name__ == "__main__":
    started = time.monotonic()
    built = ensure_kdump(ensure(sys.argv[1] if len(sys.argv) > 1 else None))
    for entry in sorted(built.dir.iterdir()):
        print(f"{entry.stat().st_size:>12}  {entry}")
    print(f"ready in {time.monotonic() - started:.1f} s")
