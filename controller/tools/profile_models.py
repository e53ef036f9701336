"""Result models of the profile tools."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..models import FanoutResult


class FleetStack(BaseModel):
    # One folded stack summed over the hosts (class docstrings would land in tools/list).

    stack: str = Field(description="folded: comm;outermost frame;...;innermost frame ([user]: in user space)")
    samples: int
    share: float = Field(description="of all the fleet's samples")
    hosts: str = Field(description="hosts that sampled it, folded")
    host_count: int


class HostProfile(BaseModel):
    host: str
    samples: int
    stacks: int = Field(description="distinct stacks on this host")
    top_stack: str | None = None
    top_share: float | None = Field(default=None, description="of this host's samples")
    output_id: str | None = Field(default=None, description="all its folded stacks: output_page, output_search")


class StandOut(BaseModel):
    host: str
    stack: str
    share: float = Field(description="of this host's samples")
    others_share: float = Field(description="of the other hosts' samples")
    why: str


class FleetProfile(BaseModel):
    samples: int = Field(description="all hosts' samples")
    stack_count: int = Field(description="distinct stacks the hosts sent")
    stacks: list[FleetStack] = Field(default_factory=list, description="the largest, fleet-wide")
    per_host: list[HostProfile] = Field(default_factory=list)
    outliers: list[StandOut] = Field(default_factory=list)
    note: str | None = None


class ProfileRun(FanoutResult):
    # Hosts grouped by outcome (their output_ids are the folded stacks), plus the merged profile.

    hz: int
    duration: float
    profile: FleetProfile | None = None
    outlier_rule: str | None = None
