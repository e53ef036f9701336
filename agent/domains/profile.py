"""profile: CPU profiles from bpftrace's `profile` probe, folded into stacks (agent/profile.py).

It runs bpftrace through the bpftrace domain's checks, caps and sandbox, so it adds no tool
and no package of its own (the bpftrace domain declares both).
"""

from __future__ import annotations

from . import Domain

DOMAIN = Domain(
    name="profile",
    code=".profile",
    policy={
        "profile_max_duration": 30.0,  # seconds per profile (bpftrace_max_duration and max_duration cap it too)
    },
)
