"""Result models of the capture tools."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..models import HostFailure


class CaptureSummary(BaseModel):
    """Each host's summary (computed on the host), and problems ranked across hosts."""

    job_id: str
    hosts: dict[str, dict[str, Any]] = Field(description="host -> its capture summary")
    problems: list[dict[str, Any]] = Field(
        default_factory=list, description="ranked across hosts; evidence: conversations, packets"
    )
    lost_between_hosts: list[dict[str, Any]] = Field(default_factory=list)
    errors: list[HostFailure] = Field(default_factory=list)
    note: str | None = None
