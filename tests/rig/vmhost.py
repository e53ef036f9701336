"""A VM host for the rig: Debian's cloud kernel (the dump fixture's) booted in QEMU (TCG) with a
minimal Debian 12 userspace built by mmdebstrap, reachable over SSH on 127.0.0.1 (QEMU
user networking with hostfwd and restrict=on: the guest reaches nothing but the forwarded port).

Its kernel differs from this machine's and has kprobes and /proc/kcore. The image is built once
and cached outside the repo (/var/cache/crashfleet-tests/vmhost/<release>/); each start boots it
with QEMU's snapshot=on (writes go to a temp file), so runs never change the image. `python -m tests.rig.vmhost`
builds it and boots it once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.dumps.fixture import BUSYBOX, Fixture, _run, ensure

CACHE = Path(os.environ.get("CRASHFLEET_VMHOST_CACHE", "/var/cache/crashfleet-tests/vmhost"))
SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
PACKAGES = (
    "python3",
    "python3-venv",
    "openssh-server",
    "crash",
    "makedumpfile",
    "kexec-tools",
    "bpftrace",
    "tcpdump",
    "iproute2",
    "procps",
    "kmod",
    "tini",
    "sudo",
)
DRGN = "0.3.0"  # as agent/dumps/drgn_pick.PINNED: the VM's /opt/crashfleet/drgn
IMAGE_BYTES = 3 << 30
IMAGE_VERSION = "2"  # bump when the image's content changes: cached images are rebuilt
BOOT_TIMEOUT = 600.0
VIRTIO = ("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk")

BOOT_INIT = """#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in {modules}; do insmod /$m.ko; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
mount -t ext4 /dev/vda /root
if [ -f /vm/ssh_host_ed25519_key ]; then  # this VM's own host key (the per-VM archive): the image's go
    busybox rm -f /root/etc/ssh/ssh_host_*
    busybox cp /vm/ssh_host_ed25519_key /vm/ssh_host_ed25519_key.pub /root/etc/ssh/
    busybox chmod 600 /root/etc/ssh/ssh_host_ed25519_key
fi
umount /proc /sys
mount -o move /dev /root/dev
exec switch_root /root /sbin/cf-init
"""
GUEST_INIT = """#!/bin/sh
# PID 1 of the VM host: no systemd (minutes under TCG); mounts, network, sshd under tini.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t debugfs none /sys/kernel/debug 2>/dev/null
modprobe virtio_net
ip link set lo up
dev=$(ls /sys/class/net | grep -v '^lo$' | head -n 1)
ip link set "$dev" up
ip addr add 10.0.2.15/24 dev "$dev"
ip route add default via 10.0.2.2
hostname cf-vmhost
mkdir -p /run/sshd /var/crash
echo "CF-VMHOST-READY $(uname -r)" > /dev/ttyS0
exec tini -s -- /usr/sbin/sshd -D -e
"""


@dataclass(frozen=True)
class Image:
    release: str
    dir: Path

    @property
    def disk(self) -> Path:
        return self.dir / "rootfs.ext4"

    @property
    def initrd(self) -> Path:
        return self.dir / "boot.cpio"

    @property
    def key(self) -> Path:
        return self.dir / "client_key"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key.pub"


def ensure_image(fx: Fixture | None = None) -> Image:
    fx = fx or ensure()
    image = Image(fx.release, CACHE / fx.release)
    image.dir.mkdir(parents=True, exist_ok=True)
    with open(image.dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stamp = image.dir / "version"
        fresh = stamp.exists() and stamp.read_text() == IMAGE_VERSION
        if not fresh or not all(p.exists() for p in (image.disk, image.initrd, image.key, image.host_key)):
            _build(fx, image)
            stamp.write_text(IMAGE_VERSION)
    return image


def _build(fx: Fixture, image: Image) -> None:
    with tempfile.TemporaryDirectory(dir=image.dir) as tmp:
        work = Path(tmp)
        kernel = _kernel_tree(fx, work)
        wheels = work / "wheels"
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--only-binary",
                ":all:",
                "--no-deps",
                "--python-version",
                "3.11",
                "--platform",
                "manylinux2014_x86_64",
                "-d",
                str(wheels),
                f"drgn=={DRGN}",
            ]
        )
        root = work / "root"
        hook = (
            f'cp -a {kernel}/lib/modules "$1/lib/" && mkdir -p "$1/tmp/w" && cp {wheels}/*.whl "$1/tmp/w/" && '
            f'chroot "$1" python3 -m venv /opt/crashfleet/drgn && '
            f'chroot "$1" sh -c "/opt/crashfleet/drgn/bin/pip install -q --no-index /tmp/w/*.whl" && '
            f'chroot "$1" depmod {fx.release} && chroot "$1" ssh-keygen -A && rm -rf "$1/tmp/w"'
        )
        _run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--include=" + ",".join(PACKAGES),
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--customize-hook=" + hook,
                SUITE,
                str(root),
                MIRROR,
            ]
        )
        _guest_files(root, image, work)
        debug = root / "usr" / "lib" / "debug" / "boot"  # where the -dbg package puts it: matched locally
        debug.mkdir(parents=True, exist_ok=True)
        shutil.copy2(fx.vmlinux, debug / fx.vmlinux.name)
        disk = work / "rootfs.ext4"
        _run(["mke2fs", "-q", "-t", "ext4", "-d", str(root), "-L", "cfroot", str(disk), str(IMAGE_BYTES >> 20) + "M"])
        initrd = _boot_initrd(kernel, work)
        for src, dest in ((disk, image.disk), (initrd, image.initrd)):
            os.replace(src, dest)


def _kernel_tree(fx: Fixture, work: Path) -> Path:
    """The image package unpacked (its modules go into the guest; its virtio modules into the
    boot initramfs): apt-get download, never installed here."""
    debs, tree = work / "debs", work / "kernel"
    debs.mkdir()
    _run(["apt-get", "download", "-q", f"linux-image-{fx.release}"], cwd=str(debs))
    _run(["dpkg-deb", "-x", str(next(debs.glob("*.deb"))), str(tree)])
    return tree


def _guest_files(root: Path, image: Image, work: Path) -> None:
    init = root / "sbin" / "cf-init"
    init.write_text(GUEST_INIT)
    init.chmod(0o755)
    (root / "etc" / "fstab").write_text("/dev/vda / ext4 rw 0 1\n")
    key = work / "client_key"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "crashfleet-tests", "-f", str(key)])
    ssh = root / "root" / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    shutil.copy2(key.with_suffix(".pub"), ssh / "authorized_keys")
    os.replace(key, image.key)
    os.replace(key.with_suffix(".pub"), image.dir / "client_key.pub")
    shutil.copy2(root / "etc" / "ssh" / "ssh_host_ed25519_key.pub", image.host_key)


def _boot_initrd(kernel: Path, work: Path) -> Path:
    root = work / "boot"
    for sub in ("bin", "proc", "sys", "dev", "root"):
        (root / sub).mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "mount", "umount", "insmod", "sleep", "switch_root"):
        (root / "bin" / applet).symlink_to("busybox")
    for module in VIRTIO:
        shutil.copy2(next(kernel.rglob(f"{module}.ko")), root / f"{module}.ko")
    (root / "init").write_text(BOOT_INIT.format(modules=" ".join(VIRTIO)))
    (root / "init").chmod(0o755)
    image = work / "boot.cpio"
    _cpio(root, image)
    return image


def _cpio(root: Path, dest: Path) -> None:
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    with open(dest, "wb") as out:
        subprocess.run(
            ["cpio", "-o", "-H", "newc", "--quiet"], input="\n".join(files).encode(), cwd=root, stdout=out, check=True
        )


def _vm_initrd(image: Image, work: Path, modules: str) -> tuple[Path, str]:
    """The cached boot archive plus one of this VM's own: a fresh host key and the current /init
    (the kernel unpacks concatenated archives in order, later files win), so VMs started from one
    image differ in host key without rebuilding it. Returns (initrd, the key's known_hosts part)."""
    root = work / "vm-initrd"
    (root / "vm").mkdir(parents=True)
    key = root / "vm" / "ssh_host_ed25519_key"
    _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "crashfleet-vmhost", "-f", str(key)])
    (root / "init").write_text(BOOT_INIT.format(modules=modules))
    (root / "init").chmod(0o755)
    extra = work / "vm.cpio"
    _cpio(root, extra)
    initrd = work / "initrd.cpio"
    with open(initrd, "wb") as out:
        for part in (image.initrd, extra):
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out)
    return initrd, " ".join(key.with_suffix(".pub").read_text().split()[:2])


@dataclass
class VMHost:
    image: Image
    port: int
    known_hosts: Path  # this VM's line alone
    pid: int

    def inventory_vars(self) -> dict[str, object]:
        """Its inventory entry: root over SSH to its forwarded port, with the image's key."""
        return {
            "ansible_host": "127.0.0.1",
            "ansible_port": self.port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.image.key),
            "ansible_python_interpreter": "/usr/bin/python3",
        }

    def ssh(self, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [
                "ssh",
                "-i",
                str(self.image.key),
                "-p",
                str(self.port),
                "-o",
                "BatchMode=yes",
                "-o",
                f"UserKnownHostsFile={self.known_hosts}",
                "-o",
                "StrictHostKeyChecking=yes",
                "root@127.0.0.1",
                *command,
            ],
            capture_output=True,
            timeout=timeout,
        )


def write_inventory(vms: dict[str, VMHost], group: str, directory: Path) -> tuple[Path, Path]:
    """An inventory of these VMs (one group) and a known_hosts with each one's own line: their paths."""
    inventory, known = directory / "inventory.yml", directory / "known_hosts"
    hosts = {name: vm.inventory_vars() for name, vm in vms.items()}
    inventory.write_text(yaml.safe_dump({"all": {"children": {group: {"hosts": hosts}}}}))
    known.write_text("".join(vm.known_hosts.read_text() for vm in vms.values()))
    return inventory, known


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(fx: Fixture, work: Path, memory_mb: int = 3072) -> Iterator[VMHost]:
    """Boot the VM host on the cached image (snapshot=on); stopped (by pid) at the end. crash needs
    ~1 GB to read the 590 MB vmlinux: hence 3 GB."""
    with fleet(fx, work, 1, memory_mb) as hosts:
        yield hosts[0]


@contextmanager
def fleet(fx: Fixture, work: Path, count: int, memory_mb: int) -> Iterator[list[VMHost]]:
    """`count` VM hosts of the one cached image, booting side by side, each its own QEMU, port,
    host key and known_hosts file (in work/vmN); all stopped by pid at the end."""
    image = ensure_image(fx)
    started: list[tuple[subprocess.Popen[bytes], VMHost, Path]] = []
    try:
        for n in range(1, count + 1):
            vm_dir = work / f"vm{n}"
            vm_dir.mkdir()
            started.append(_start(fx, image, vm_dir, memory_mb))
        for qemu, host, serial in started:
            _wait_ssh(qemu, host, serial)
        yield [host for _, host, _ in started]
    finally:
        for qemu, _, _ in started:
            qemu.kill()  # a throwaway overlay: nothing to shut down cleanly
            qemu.wait()


def _start(fx: Fixture, image: Image, work: Path, memory_mb: int) -> tuple[subprocess.Popen[bytes], VMHost, Path]:
    port = _free_port()
    initrd, host_key = _vm_initrd(image, work, " ".join(VIRTIO))
    known = work / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_key}\n")
    serial = work / "serial.log"
    argv = [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-m",
        str(memory_mb),
        "-smp",
        "1",
        "-display",
        "none",
        "-nodefaults",
        "-no-reboot",
        "-kernel",
        str(fx.dir / "vmlinuz"),
        "-initrd",
        str(initrd),
        "-append",
        "console=ttyS0 nokaslr panic=0 loglevel=4",
        "-serial",
        f"file:{serial}",
        "-drive",
        f"file={image.disk},format=raw,if=virtio,snapshot=on",  # writes go to a temp file
        "-netdev",
        f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        "virtio-net-pci,netdev=n0",
    ]
    qemu = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    return qemu, VMHost(image, port, known, qemu.pid), serial


def _wait_ssh(qemu: subprocess.Popen[bytes], host: VMHost, serial: Path) -> None:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        if qemu.poll() is not None:
            raise RuntimeError(f"the VM host exited ({qemu.returncode}): {serial.read_text(errors='replace')[-2000:]}")
        if "CF-VMHOST-READY" in (serial.read_text(errors="replace") if serial.exists() else ""):
            try:
                if host.ssh("true", timeout=60).returncode == 0:
                    return
            except subprocess.TimeoutExpired:
                pass
        time.sleep(0.5)
    raise RuntimeError(f"no SSH on the VM host within {BOOT_TIMEOUT:g} s: {serial.read_text(errors='replace')[-2000:]}")


if __name__ == "__main__":
    started = time.monotonic()
    fixture = ensure()
    ensure_image(fixture)
    print(f"image ready in {time.monotonic() - started:.1f} s", flush=True)
    with tempfile.TemporaryDirectory() as scratch, running(fixture, Path(scratch)) as vm:
        print(f"booted, ssh on 127.0.0.1:{vm.port} in {time.monotonic() - started:.1f} s")
        print(
            vm.ssh(
                "uname -r; ls -l /proc/kcore; /opt/crashfleet/drgn/bin/python3 -c "
                "'import drgn; print(drgn.__version__)'"
            ).stdout.decode()
        )
