"""The running kernel as a dump: /proc/kcore, for crash and drgn on a host that hangs but has
not panicked. Gated by policy `live_kernel` (false by default): live memory holds every
secret of every running process, and reading it is not undone by closing a session.
"""

from __future__ import annotations

import os
import platform
import struct
from typing import Any, Dict, Optional

from .. import protocol
from ..errors import AgentError
from . import formats

KCORE = "/proc/kcore"
NOTES = "/sys/kernel/notes"  # the running kernel's ELF notes: its GNU build id
NT_GNU_BUILD_ID = 3
# Opening /proc/kcore needs CAP_SYS_RAWIO: crash and drgn keep it for a live session only.
CAPS = ("SYS_RAWIO",)


# The summary a live open shows (drgn: crash cannot always read a live kernel).
SUMMARY_CODE = """\
uts = prog["init_uts_ns"].name
print("LIVE KERNEL:", uts.release.string_().decode(), uts.version.string_().decode())
print("NODENAME:", uts.nodename.string_().decode())
print("DUMPFILE: /proc/kcore (live)")
print("TASKS:", sum(1 for _ in for_each_task(prog)))
"""


def check(settings: Dict[str, Any]) -> None:
    if not settings.get("live_kernel"):
        raise AgentError(
            protocol.POLICY_DENIED,
            "this host's policy does not allow reading the live kernel (live_kernel: false, the default)",
            hint='set "live_kernel": true in /etc/crashfleet/agent-policy.json on this host: '
            "live memory holds every running process's secrets",
            rule="policy.live_kernel",
        )
    if not os.path.exists(KCORE):
        raise AgentError(
            protocol.NO_KCORE,
            "%s does not exist on this host (a kernel without CONFIG_PROC_KCORE, or a container without it)" % KCORE,
            hint="analyse a dump instead (dumps_list), or run on a host whose kernel has /proc/kcore",
        )


def dump() -> Dict[str, Any]:
    """The live kernel described the way discovery describes a dump file."""
    return {
        "path": KCORE,
        "format": "live",
        "arch": formats.canonical_arch(platform.machine()),
        "release": platform.release(),
        "build_id": running_build_id(),
        "size": 0,
        "mtime": 0.0,
        "truncated": False,
        "incomplete": False,
        "live": True,
    }


def running_build_id() -> Optional[str]:
    try:
        with open(NOTES, "rb") as handle:
            data = handle.read(1 << 16)
    except OSError:
        return None
    offset = 0
    while offset + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from("<III", data, offset)
        name_at = offset + 12
        desc_at = name_at + (namesz + 3) // 4 * 4
        if data[name_at : name_at + namesz].rstrip(b"\0") == b"GNU" and ntype == NT_GNU_BUILD_ID:
            return data[desc_at : desc_at + descsz].hex()
        offset = desc_at + (descsz + 3) // 4 * 4
    return None
