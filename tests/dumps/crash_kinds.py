"""Real kernel crashes of many kinds, for tests that judge whether a triage names the right culprit.

Debian's cloud kernel (the vmcore fixture's, tests/dumps/fixture.py) boots in QEMU (TCG) with a
busybox initramfs whose init loads one small out-of-tree module (tests/dumps/modules/, built
against the kernel's own linux-headers-<release>, which this module apt-get installs when
missing: the release is resolved at build time, so ./dev cannot name the package) whose bug
is in one distinctly named noinline function. Each boot's serial console is kept as printed,
and QEMU's `dump-guest-memory` writes an ELF vmcore (with VMCOREINFO: `-device vmcoreinfo`
and qemu_fw_cfg.ko). Kinds (ground truth: label, culprit function, module or comm):

  null_deref    cfx_flush_ring   cfx_ring  BUG: kernel NULL pointer dereference (oops=panic)
  bug_on        cfx_check_state  cfx_bug   kernel BUG at cfx_bug.c:N, invalid opcode (oops=panic)
  softlockup_a  cfx_spin_wait    cfx_spin  soft lockup, preemption off (softlockup_panic=1 watchdog_thresh=3)
  softlockup_b  cfx_poll_hw      cfx_poll  the same soft lockup in another module and function
  hung_task     cfx_wait_reply   cfx_hang  insmod in D state forever (hung_task_panic=1, 3 s timeout)
  warn          cfx_validate     cfx_warn  WARN_ON(1) (panic_on_warn=1)
  gpf           cfx_walk_list    cfx_gpf   general protection fault at 0xdead000000000100 (oops=panic)
  divide        cfx_ratio        cfx_div   divide error (oops=panic)
  oom           (none)           cf-hog    a shell script growing a variable, vm.panic_on_oom=1
  sysrq         sysrq_handle_crash init    fixture.py's (not rebuilt here)
  initexit      do_exit          init      fixture.py's (not rebuilt here)

Also, for KDUMP_KINDS (null_deref, softlockup_a), a kdump-compressed dump written by a capture
kernel's `makedumpfile -c -d 31` (kdump-tools' default) plus the `makedumpfile --dump-dmesg`
file (tests/dumps/kdump_fixture.py's machinery), and one pstore record set: ramoops over a
memmap=-reserved region, the null_deref panic, a reboot that keeps RAM, and the second boot's
/sys/fs/pstore files copied out byte for byte (a tar on a raw virtio disk).

API: `ensure_kinds() -> CrashKinds`, built once per machine under
/var/cache/crashfleet-tests/crashkinds/<release>/ (flock'd; a kind is rebuilt only when one of
its files is missing; delete the dir after changing a module's source). Per kind:
`serial(kind)`, `vmcore(kind)`, `kdump(kind)` and `dmesg(kind)` (KDUMP_KINDS only), and
`truth(kind) -> Truth(kind, culprit, owner)`; `pstore` is the dir of the pstore records,
`pstore_serial` the console of both boots. `python -m tests.dumps.crash_kinds` builds by hand
and prints what it has and how long it took; `--logs DIR` also writes each kind's serial log,
trimmed, as DIR/<kind>.log with a README.md (tests/unit/data/oops/).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tests.dumps import fixture, kdump_fixture
from tests.dumps.fixture import Fixture, _run, add_named, busybox_root, cpio, panic_dump, qemu_argv

CACHE = Path(os.environ.get("CRASHFLEET_CRASHKINDS_CACHE", "/var/cache/crashfleet-tests/crashkinds"))
MODULE_SRC = Path(__file__).with_name("modules")
APPEND = "console=ttyS0 nokaslr panic=0 quiet loglevel=7"
APPLETS = ("sh", "mount", "insmod", "sleep", "echo", "cat", "ls", "tar", "sync", "poweroff")
OOPS_PANIC = "oops=panic"  # 6.1 has no panic_on_oops= boot parameter; oops= sets it
SOFTLOCKUP = "softlockup_panic=1 watchdog_thresh=3"  # reported after 2 * 3 s
KDUMP_KINDS = ("null_deref", "softlockup_a")
FIXTURE_KINDS = ("sysrq", "initexit")
# The hog: a shell variable doubling until the kernel runs out of memory. A script's comm is
# its file name, so the OOM report names cf-hog.
HOG = '#!/bin/sh\nx=crashfleet-hog\nwhile true; do x="$x$x"; done\n'

# pstore: ramoops on 1 MiB at 128 MiB, kept out of the kernel's hands by memmap=SIZE$ADDR
# (reserved in the e820 map) and intact across a warm reset (QEMU does not clear RAM).
RAMOOPS_ADDR, RAMOOPS_SIZE, RAMOOPS_RECORD = 0x8000000, 0x100000, 0x10000
PSTORE_APPEND = (
    f"console=ttyS0 nokaslr panic=1 oops=panic quiet loglevel=7 memmap={RAMOOPS_SIZE >> 20}M${RAMOOPS_ADDR:#x}"
)
PSTORE_MODULES = ("reed_solomon", "ramoops")  # ramoops needs reed_solomon (its ECC)
PSTORE_TIMEOUT = 300.0  # two boots under TCG


class Truth(NamedTuple):
    kind: str
    culprit: str | None  # the function at fault; None when no function is (oom: a process is)
    owner: str  # the module at fault, or the comm of the task at fault


@dataclass(frozen=True)
class Kind:
    name: str
    culprit: str | None
    owner: str
    header: str  # text of the report's first line, as the serial log holds it
    module: str | None = None  # loaded by init: the trigger
    params: str = ""  # boot parameters beyond APPEND
    setup: str = ""  # init's lines before the trigger
    trigger: str = ""  # init's trigger; default: insmod the module
    append: str = APPEND  # the base boot parameters (KASLR_APPEND: randomized, as fleets boot)

    @property
    def init_trigger(self) -> str:
        return self.trigger or f"insmod /{self.module}.ko"


# As a production kernel boots: KASLR on (text and the direct map randomized), and a log buffer the
# kernel allocates at boot (log_buf_len, as on machines with many CPUs): both read by address
# translation through the page tables, not the fixed kernel-image mapping.
KASLR_APPEND = APPEND.replace("nokaslr ", "") + " log_buf_len=1M"


def _module_kind(name: str, module: str, culprit: str, header: str, params: str, **more: str) -> Kind:
    """A kind whose bug is `culprit` in `module`, which init loads (insmod) as its trigger."""
    return Kind(name, culprit, module, header, module, params, **more)


KINDS = {
    k.name: k
    for k in (
        _module_kind("null_deref", "cfx_ring", "cfx_flush_ring", "BUG: kernel NULL pointer dereference", OOPS_PANIC),
        _module_kind("bug_on", "cfx_bug", "cfx_check_state", "kernel BUG at cfx_bug.c:", OOPS_PANIC),
        _module_kind("softlockup_a", "cfx_spin", "cfx_spin_wait", "watchdog: BUG: soft lockup", SOFTLOCKUP),
        _module_kind("softlockup_b", "cfx_poll", "cfx_poll_hw", "watchdog: BUG: soft lockup", SOFTLOCKUP),
        _module_kind(
            "hung_task",
            "cfx_hang",
            "cfx_wait_reply",
            "INFO: task insmod:",
            "hung_task_panic=1",
            setup="echo 3 > /proc/sys/kernel/hung_task_timeout_secs",
            trigger="insmod /cfx_hang.ko &",  # init goes on: insmod is the task that hangs
        ),
        _module_kind("warn", "cfx_warn", "cfx_validate", "WARNING: CPU: 0 PID:", "panic_on_warn=1"),
        _module_kind(
            "gpf",
            "cfx_gpf",
            "cfx_walk_list",
            "general protection fault, probably for non-canonical address 0xdead000000000100",
            OOPS_PANIC,
        ),
        _module_kind("divide", "cfx_div", "cfx_ratio", "divide error: 0000", OOPS_PANIC),
        _module_kind(  # the same bug as gpf, on a kernel booted as fleets boot it
            "gpf_kaslr",
            "cfx_gpf",
            "cfx_walk_list",
            "general protection fault, probably for non-canonical address 0xdead000000000100",
            OOPS_PANIC,
            append=KASLR_APPEND,
        ),
        Kind(
            "oom",
            None,
            "cf-hog",
            "cf-hog invoked oom-killer",
            setup="echo 1 > /proc/sys/vm/panic_on_oom",
            trigger="/bin/cf-hog",
        ),
    )
}
FIXTURE_TRUTH = {
    "sysrq": Truth("sysrq", "sysrq_handle_crash", "init"),
    "initexit": Truth("initexit", "do_exit", "init"),
}

INIT = """#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
insmod /qemu_fw_cfg.ko
for name in {named}; do "/bin/$name" & done
{setup}
sleep 1
echo "crashfleet fixture: panic {kind}" > /dev/kmsg
{trigger}
while true; do sleep 1000; done
"""
# First boot: no records yet, so panic (null_deref). Second boot (panic=1 rebooted it): the
# records are there; tar them onto the raw disk and power off.
PSTORE_INIT = """#!/bin/sh
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
insmod /reed_solomon.ko
insmod /ramoops.ko mem_address={addr:#x} mem_size={size:#x} record_size={record:#x}
mount -t pstore pstore /sys/fs/pstore
if [ -n "$(ls /sys/fs/pstore)" ]; then
  echo "CF-PSTORE-RECORDS $(ls /sys/fs/pstore)"
  for m in {virtio}; do insmod /$m.ko; done
  i=0
  while [ ! -b /dev/vda ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
  tar -c -f /dev/vda -C /sys/fs/pstore . && sync && echo CF-PSTORE-SAVED
  poweroff -f
fi
for name in {named}; do "/bin/$name" & done
sleep 1
echo "crashfleet fixture: panic pstore" > /dev/kmsg
insmod /cfx_ring.ko
while true; do sleep 1000; done
"""


@dataclass(frozen=True)
class CrashKinds:
    release: str
    dir: Path
    base: Fixture  # sysrq and initexit live there

    @property
    def kinds(self) -> tuple[str, ...]:
        return (*KINDS, *FIXTURE_KINDS)

    @property
    def vmlinux(self) -> Path:
        return self.base.vmlinux

    def truth(self, kind: str) -> Truth:
        if kind in FIXTURE_TRUTH:
            return FIXTURE_TRUTH[kind]
        k = KINDS[kind]
        return Truth(k.name, k.culprit, k.owner)

    def serial(self, kind: str) -> Path | None:
        """The guest's serial console of the boot that crashed, as printed (CRLF line ends).
        fixture.py's kinds have one only where its build keeps it."""
        if kind in FIXTURE_KINDS:
            path = self.base.dir / f"{kind}.serial.log"
            return path if path.exists() else None
        return self._serial(kind)

    def _serial(self, kind: str) -> Path:
        return self.dir / f"{kind}.serial.log"

    def vmcore(self, kind: str) -> Path:
        return self.base.vmcore(kind) if kind in FIXTURE_KINDS else self.dir / f"{kind}.vmcore"

    def kdump(self, kind: str) -> Path | None:
        return self.dir / "kdump" / kind / "dump.zlib" if kind in KDUMP_KINDS else None

    def dmesg(self, kind: str) -> Path | None:
        return self.dir / "kdump" / kind / "dmesg" if kind in KDUMP_KINDS else None

    def kdump_serial(self, kind: str) -> Path | None:
        """Both kernels' console: the panic, then the capture kernel running makedumpfile."""
        return self.dir / "kdump" / kind / "serial.log" if kind in KDUMP_KINDS else None

    @property
    def pstore(self) -> Path:
        """The dmesg-ramoops-N files (null_deref's oops and panic) as /sys/fs/pstore showed them."""
        return self.dir / "pstore"

    @property
    def pstore_serial(self) -> Path:
        return self.dir / "pstore.serial.log"

    @property
    def modules(self) -> Path:
        return self.dir / "modules"


def ensure_kinds(rel: str | None = None) -> CrashKinds:
    """Every kind's files for `rel` (default: the current cloud kernel), built once per machine."""
    base = fixture.ensure(rel)
    ck = CrashKinds(base.release, CACHE / base.release, base)
    ck.dir.mkdir(parents=True, exist_ok=True)
    with open(ck.dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test sessions wait for one builder
        if not all((ck.modules / f"{k.module}.ko").exists() for k in KINDS.values() if k.module):
            _build_modules(ck)
        for kind in KINDS.values():
            if not ck.vmcore(kind.name).exists() or not ck._serial(kind.name).exists():
                _build_kind(ck, kind)
        for name in KDUMP_KINDS:
            if not all(p and p.exists() for p in (ck.kdump(name), ck.dmesg(name), ck.kdump_serial(name))):
                _build_kdump(ck, KINDS[name])
        if not ck.pstore_serial.exists() or not any(ck.pstore.glob("dmesg-ramoops-*")):
            _build_pstore(ck)
        _write_manifest(ck)
    return ck


def _build_modules(ck: CrashKinds) -> None:
    """Build the cfx_* modules against the fixture kernel's headers, in a temp copy of the sources
    (the repo holds no build products)."""
    headers = Path(f"/usr/src/linux-headers-{ck.release}")
    if not (headers / "Makefile").exists():
        # Release-specific: resolved at build time, so the fixture installs it, not ./dev's list.
        _run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600"]
            + [f"linux-headers-{ck.release}"]
        )
    with tempfile.TemporaryDirectory(dir=ck.dir) as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(MODULE_SRC, src)
        _run(["make", "-C", str(src), f"KERNEL_RELEASE={ck.release}", f"KDIR={headers}"])
        ck.modules.mkdir(exist_ok=True)
        for ko in src.glob("*.ko"):
            os.replace(ko, ck.modules / ko.name)


def _initramfs(ck: CrashKinds, kind: Kind, work: Path) -> Path:
    root = work / "root"
    busybox_root(root, APPLETS)
    add_named(root)
    shutil.copy2(ck.base.dir / "qemu_fw_cfg.ko", root / "qemu_fw_cfg.ko")
    if kind.module:
        shutil.copy2(ck.modules / f"{kind.module}.ko", root / f"{kind.module}.ko")
    (root / "bin" / "cf-hog").write_text(HOG)
    (root / "bin" / "cf-hog").chmod(0o755)
    (root / "init").write_text(_init(kind))
    (root / "init").chmod(0o755)
    return cpio(root, work / "initrd.cpio")


def _init(kind: Kind) -> str:
    named = " ".join(fixture.NAMED)
    return INIT.format(named=named, setup=kind.setup, kind=kind.name, trigger=kind.init_trigger)


def _build_kind(ck: CrashKinds, kind: Kind) -> None:
    with tempfile.TemporaryDirectory(dir=ck.dir) as tmp:
        work = Path(tmp)
        dump = work / "dump"
        serial = panic_dump(ck.base, _initramfs(ck, kind, work), f"{kind.append} {kind.params}".strip(), dump)
        _check_header(serial, kind)
        os.replace(serial, ck._serial(kind.name))
        os.replace(dump, ck.vmcore(kind.name))


def _check_header(serial: Path, kind: Kind) -> None:
    """A boot that panicked for another reason is a broken fixture, not a kind: say so now."""
    text = serial.read_text(errors="replace")
    if kind.header not in text:
        raise RuntimeError(f"{kind.name}: the panic's log lacks {kind.header!r}; serial tail:\n{text[-3000:]}")


def _build_kdump(ck: CrashKinds, kind: Kind) -> None:
    """kdump-tools' way: the capture kernel's `makedumpfile -c -d 31` and its --dump-dmesg."""
    dest = ck.dir / "kdump" / kind.name
    extra = {f"{kind.module}.ko": ck.modules / f"{kind.module}.ko"} if kind.module else {}
    with tempfile.TemporaryDirectory(dir=ck.dir) as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        serial = kdump_fixture.capture(
            ck.base,
            out,
            label=kind.name,
            trigger=kind.init_trigger,
            setup=kind.setup,
            extra=extra,
            append=kind.params,
            files=("dump.zlib", "dmesg"),
        )
        _check_header(serial, kind)
        dest.parent.mkdir(exist_ok=True)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(out, dest)


def _build_pstore(ck: CrashKinds) -> None:
    """Boot, panic (null_deref) into ramoops, reboot keeping RAM, copy the records out."""
    with tempfile.TemporaryDirectory(dir=ck.dir) as tmp:
        work = Path(tmp)
        disk, serial = work / "disk.raw", work / "serial.log"
        with open(disk, "wb") as handle:
            handle.truncate(8 << 20)
        argv = [
            *qemu_argv(ck.base, _pstore_initramfs(ck, work), PSTORE_APPEND, serial),
            "-drive",
            f"file={disk},format=raw,if=virtio",
        ]  # no -no-reboot: panic=1 resets the guest, and its RAM with the records survives
        _run_until_exit(argv, serial)
        text = serial.read_text(errors="replace")
        if "CF-PSTORE-SAVED" not in text:
            raise RuntimeError(f"the second boot saved no pstore records; serial tail:\n{text[-3000:]}")
        records = work / "records"
        with tarfile.open(disk) as tar:  # the records' bytes, names and modes as pstore showed them
            tar.extractall(records, filter="tar")
        shutil.rmtree(ck.pstore, ignore_errors=True)
        os.replace(records, ck.pstore)
        os.replace(serial, ck.pstore_serial)


def _pstore_initramfs(ck: CrashKinds, work: Path) -> Path:
    root = work / "root"
    busybox_root(root, APPLETS)
    add_named(root)
    kernel = _kernel_modules(ck, work)
    for name in (*PSTORE_MODULES, *kdump_fixture.VIRTIO):
        shutil.copy2(next(kernel.rglob(f"{name}.ko")), root / f"{name}.ko")
    shutil.copy2(ck.modules / "cfx_ring.ko", root / "cfx_ring.ko")
    init = PSTORE_INIT.format(
        addr=RAMOOPS_ADDR,
        size=RAMOOPS_SIZE,
        record=RAMOOPS_RECORD,
        virtio=" ".join(kdump_fixture.VIRTIO),
        named=" ".join(fixture.NAMED),
    )
    (root / "init").write_text(init)
    (root / "init").chmod(0o755)
    return cpio(root, work / "initrd.cpio")


def _kernel_modules(ck: CrashKinds, work: Path) -> Path:
    """The image package's modules tree (ramoops, virtio: modules in the cloud kernel)."""
    debs, out = work / "debs", work / "image"
    debs.mkdir()
    _run(["apt-get", "download", "-q", f"linux-image-{ck.release}"], cwd=str(debs))
    _run(["dpkg-deb", "-x", str(next(debs.glob("*.deb"))), str(out)])
    return out / "lib" / "modules" / ck.release / "kernel"


def _run_until_exit(argv: list[str], serial: Path) -> None:
    """Run QEMU until the guest powers off; a third boot means the records were not kept (each
    boot without them panics again), so stop there instead of at the timeout."""
    qemu = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + PSTORE_TIMEOUT
    try:
        while qemu.poll() is None:
            text = serial.read_text(errors="replace") if serial.exists() else ""
            if text.count("Linux version") > 2 or time.monotonic() > deadline:
                raise RuntimeError(f"no pstore records kept across the reboot; serial tail:\n{text[-3000:]}")
            time.sleep(0.5)
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()


def _write_manifest(ck: CrashKinds) -> None:
    def path(p: Path | None) -> str | None:
        return str(p) if p else None

    kinds = {
        name: {
            "truth": ck.truth(name)._asdict(),
            "serial": path(ck.serial(name)),
            "vmcore": str(ck.vmcore(name)),
            "kdump": path(ck.kdump(name)),
            "dmesg": path(ck.dmesg(name)),
        }
        for name in ck.kinds
    }
    doc = {"release": ck.release, "vmlinux": str(ck.vmlinux), "kinds": kinds, "pstore": str(ck.pstore)}
    (ck.dir / "manifest.json").write_text(json.dumps(doc, indent=1))


# Each kind's serial log, trimmed, for unit tests of the text parsers (committed: a few KB each).
LOG_LINES = 300


def trimmed_log(serial: Path, lines: int = LOG_LINES) -> str:
    """The boot's last `lines` lines, from init's start at the earliest, as text (LF ends)."""
    text = serial.read_bytes().decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "\n")
    rows = text.splitlines()
    start = max(len(rows) - lines, _last_index(rows, "Run /init as init process"))
    return "\n".join(rows[start:]) + "\n"


def _last_index(rows: list[str], needle: str) -> int:
    found = [i for i, row in enumerate(rows) if needle in row]
    return found[-1] if found else 0


def export_logs(ck: CrashKinds, dest: Path) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    written, readme = [], [_README_HEAD.format(release=ck.release, append=APPEND)]
    for name in ck.kinds:
        serial = ck.serial(name)
        if serial is None:
            continue
        out = dest / f"{name}.log"
        out.write_text(trimmed_log(serial))
        written.append(out)
        readme.append(f"- `{out.name}`: {_how(name)}")
    (dest / "README.md").write_text("\n".join(readme) + "\n")
    return written


_README_HEAD = """# Real kernel crash logs

Serial console logs of Debian's cloud kernel {release} crashing in QEMU (TCG, 1 CPU,
256 MB), written by `python -m tests.dumps.crash_kinds --logs tests/unit/data/oops` (see
tests/dumps/crash_kinds.py): each is the crashed boot's log from `Run /init as init process` on
(at most its last 300 lines), CRLF turned into LF. Every boot had
`{append}` and its kind's own parameters; init insmods qemu_fw_cfg.ko,
starts cf-alpha, cf-beta and cf-gamma (shell scripts sleeping), runs its kind's setup, then logs
`crashfleet fixture: panic <kind>` to /dev/kmsg before its trigger. The cfx_* modules are
tests/dumps/modules/, built against linux-headers-{release} (unsigned and out of tree: the
kernel is tainted OE). The culprit is the named function; the owner, the module or comm.
"""


def _how(name: str) -> str:
    if name in FIXTURE_KINDS:
        truth = FIXTURE_TRUTH[name]
        return f"tests/dumps/fixture.py's panic: init runs `{fixture.TRIGGERS[name]}` ({truth.culprit}, comm init)"
    kind = KINDS[name]
    params = f"`{kind.params}`" if kind.params else "no extra boot parameters"
    setup = f"; init ran `{kind.setup}`" if kind.setup else ""
    what = f"module {kind.module}, culprit {kind.culprit}()" if kind.module else f"comm {kind.owner}, {_HOG_SAYS}"
    return f"{params}{setup}; trigger `{kind.init_trigger}` ({what})"


_HOG_SAYS = 'a busybox sh script doubling a variable forever (`x="$x$x"`)'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("release", nargs="?", help="kernel release (default: the current cloud kernel)")
    parser.add_argument("--logs", type=Path, help="also write each kind's trimmed serial log here")
    args = parser.parse_args()
    started = time.monotonic()
    ck = ensure_kinds(args.release)
    for entry in sorted(p for p in ck.dir.rglob("*") if p.is_file()):
        print(f"{entry.stat().st_size:>12}  {entry}")
    print(f"ready in {time.monotonic() - started:.1f} s")
    if args.logs:
        for path in export_logs(ck, args.logs):
            print(f"{path.stat().st_size:>12}  {path}")


if __name__ == "__main__":
    main()
