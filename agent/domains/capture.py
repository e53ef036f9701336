"""capture: tcpdump into bounded rings, summarised on the host (agent/capture.py, agent/pcap/)."""

from __future__ import annotations

from . import Domain

DOMAIN = Domain(
    name="capture",
    code=".capture",
    policy={
        "capture_dir": "/var/tmp/crashfleet-captures",  # pcap rings; each capture's dir belongs to capture_user
        "capture_user": None,  # tcpdump drops root to this user (None: tcpdump, else nobody)
        "capture_ring_bytes": 64 << 20,  # disk cap of one capture (a ring of 4 files)
        "capture_keep": 8,  # finished captures kept on disk, newest first
        "max_captures": 2,  # captures running at once
        "capture_total_bytes": 512 << 20,  # running rings plus kept captures; the oldest kept go first
        "capture_min_free_bytes": 64 << 20,  # a capture stops when its filesystem has less free
    },
    tools={"tcpdump": ["--version"]},
    packages={"Debian": ["tcpdump"], "RedHat": ["tcpdump"]},
)
