"""bpftrace: bounded tracing runs, checked before they start (agent/bpftrace.py)."""

from __future__ import annotations

from . import Domain

DOMAIN = Domain(
    name="bpftrace",
    code=".bpftrace",
    policy={
        "bpftrace_enabled": True,
        "bpftrace_max_duration": 60.0,  # seconds per bpftrace run (also capped by max_duration)
        "bpftrace_max_output_bytes": 8 << 20,  # a run writing more is stopped
        "bpftrace_mount_tracefs": True,  # mount tracefs when missing (bpftrace needs it)
        "bpftrace_strlen": 64,  # BPFTRACE_STRLEN
        "bpftrace_map_keys_max": 4096,  # BPFTRACE_MAP_KEYS_MAX
        "bpftrace_max_probes": 512,  # BPFTRACE_MAX_PROBES and BPFTRACE_MAX_BPF_PROGS
    },
    tools={"bpftrace": ["--version"]},
    packages={"Debian": ["bpftrace"], "RedHat": ["bpftrace"]},
)
