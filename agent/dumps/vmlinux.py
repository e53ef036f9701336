"""Find the vmlinux (with debuginfo) that matches a dump: by release, checked by build id."""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from .. import protocol
from ..errors import AgentError
from . import formats


def candidates(release: str, dump_path: str, extra_dirs: List[str], standard: bool = True) -> List[str]:
    """Where a vmlinux for `release` lies, most specific first: beside the dump (whoever kept the
    dump kept its kernel), the policy's vmlinux_dirs, then the distribution's places (policy
    vmlinux_standard_dirs)."""
    dump_dir = os.path.dirname(dump_path)
    paths = [os.path.join(dump_dir, "vmlinux-%s" % release), os.path.join(dump_dir, "vmlinux")]
    for directory in extra_dirs:
        paths += [os.path.join(directory, "vmlinux-%s" % release), os.path.join(directory, release, "vmlinux")]
    if standard:
        paths += [
            "/usr/lib/debug/boot/vmlinux-%s" % release,
            "/usr/lib/debug/lib/modules/%s/vmlinux" % release,
            "/boot/vmlinux-%s" % release,
        ]
    return paths


def build_id(path: str) -> Optional[str]:
    try:
        return formats.elf_build_id(path)
    except (OSError, formats.NotADump):
        return None


def check(vmlinux: str, dump: Dict[str, Any]) -> str:
    """`vmlinux` (given by the caller) if it is an ELF file whose build id matches the dump's."""
    if not os.path.isfile(vmlinux):
        raise AgentError(
            protocol.NOT_FOUND,
            "vmlinux %s does not exist" % vmlinux,
            hint="omit vmlinux to have the agent find the matching one",
        )
    try:
        found = formats.elf_build_id(vmlinux)
    except (OSError, formats.NotADump) as exc:
        raise AgentError(
            protocol.WRONG_VMLINUX,
            "%s is not a vmlinux (ELF) file: %s" % (vmlinux, exc),
            hint="pass the uncompressed vmlinux with debuginfo, not vmlinuz",
        ) from None
    want = dump.get("build_id")
    if want and found != want:
        raise AgentError(
            protocol.WRONG_VMLINUX,
            "vmlinux %s does not match the dump: its build id is %s, the dump's "
            "kernel (%s) has %s" % (vmlinux, found, dump.get("release"), want),
            hint=install_hint(dump.get("release") or "?"),
        )
    return os.path.realpath(vmlinux)


def match(dump: Dict[str, Any], extra_dirs: List[str], standard: bool = True) -> Dict[str, Any]:
    """The first candidate that exists and matches; a miss lists where we looked."""
    release = dump.get("release")
    if not release:
        raise AgentError(
            protocol.NO_RELEASE,
            "the dump %s carries no kernel release (no VMCOREINFO)" % dump["path"],
            hint="pass vmlinux explicitly",
        )
    looked: List[str] = []
    for path in candidates(release, dump["path"], extra_dirs, standard):
        if not os.path.isfile(path):
            looked.append(path)
            continue
        found = build_id(path)
        if dump.get("build_id") and found != dump["build_id"]:
            looked.append("%s (build id %s, dump has %s)" % (path, found, dump["build_id"]))
            continue
        return {"path": os.path.realpath(path), "build_id": found, "checked": bool(dump.get("build_id"))}
    raise AgentError(
        protocol.NO_VMLINUX,
        "no vmlinux matching kernel %s; looked in: %s" % (release, "; ".join(looked)),
        hint=install_hint(release),
        looked=looked,
    )


def install_hint(release: str) -> str:
    """What provides the vmlinux for this release on the common distributions."""
    distro = _distro_id()
    if distro in ("debian",):
        return "install linux-image-%s-dbg (apt-get install linux-image-%s-dbg)" % (release, release)
    if distro in ("ubuntu",):
        return "install linux-image-unsigned-%s-dbgsym from ddebs.ubuntu.com" % release
    if distro in ("rhel", "centos", "fedora", "rocky", "almalinux", "ol"):
        return "install kernel-debuginfo-%s (dnf debuginfo-install kernel-%s)" % (release, release)
    return "install the debuginfo package of kernel %s (the vmlinux with DWARF)" % release


def debuginfo_status(dump: Dict[str, Any], extra_dirs: List[str], standard: bool = True) -> Dict[str, Any]:
    """For dumps_list: the matching vmlinux, or what to install."""
    if not dump.get("release"):
        return {"present": False, "source": "missing", "hint": "no kernel release in the dump: pass vmlinux explicitly"}
    try:
        found = match(dump, extra_dirs, standard)
    except AgentError as exc:
        return {"present": False, "source": "missing", "package_hint": exc.hint}
    return {"present": True, "source": "local", "vmlinux": found["path"]}


def _distro_id() -> str:
    try:
        with open("/etc/os-release") as handle:
            for line in handle:
                if line.startswith("ID="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return ""
