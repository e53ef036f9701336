"""Result models of the bpftrace tools."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..models import FanoutResult


class Bucket(BaseModel):
    min: int | None = None
    max: int | None = None  # None: the last, open-ended bucket
    count: int


class HostFigure(BaseModel):
    # One host's figure of a map: its value, or for histograms its count and percentiles.

    host: str
    value: float | None = None
    count: int | None = None
    p50: float | None = None
    p99: float | None = None


class Outlier(BaseModel):
    host: str
    figure: str  # what was compared: value, total or p99
    value: float
    fleet_median: float
    why: str


class MergedMap(BaseModel):
    # One bpftrace map merged across hosts (class docstrings would land in tools/list).

    name: str
    kind: str  # count, sum, avg, min, max, stats, hist, lhist or value
    hosts: str  # hosts that printed this map, folded
    value: float | None = None  # fleet-wide, of an unkeyed map
    keys: dict[str, float] | None = Field(default=None, description="fleet-wide value per key, top keys")
    key_count: int | None = None
    histogram: list[Bucket] | None = Field(default=None, description="fleet-wide, all keys")
    count: int | None = None
    p50: float | None = None
    p99: float | None = None
    per_host: list[HostFigure] = Field(default_factory=list)
    outliers: list[Outlier] = Field(default_factory=list)
    note: str | None = None


class BpftraceRun(FanoutResult):
    # Grouped text per host (printf output, or the raw text output) plus merged maps.

    maps: list[MergedMap] = Field(default_factory=list)
    outlier_rule: str | None = None


class ProbeDrift(BaseModel):
    hosts: str
    count: int  # probes these hosts offer
    lacks_count: int = Field(description="probes other hosts offer that these lack")
    lacks: list[str] = Field(default_factory=list, description="the first of them")


class BpftraceProbes(FanoutResult):
    drift: list[ProbeDrift] = Field(default_factory=list)  # set when hosts offer different probes


class ToolHosts(BaseModel):
    hosts: str
    reason: str


class ToolEntry(BaseModel):
    name: str
    source: str  # crashfleet (bundled) or distro (/usr/sbin/*.bt)
    description: str
    args: list[str] = Field(default_factory=list)
    runs_on: str = Field(description="hosts it can run on, folded")
    cannot_run: list[ToolHosts] = Field(default_factory=list)


class BpftraceTools(BaseModel):
    hosts: str
    tools: list[ToolEntry]
    errors: FanoutResult | None = None  # hosts that did not answer
    note: str | None = None
