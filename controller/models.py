"""Result models of the MCP tools: one fan-out shape for every tool that fans out."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

Status = Literal["ok", "failed", "unreachable", "timeout", "running"]


class Summary(BaseModel):
    total: int
    ok: int = 0
    failed: int = 0
    unreachable: int = 0
    timeout: int = 0
    running: int = 0
    elapsed_ms: int = 0


class Group(BaseModel):
    """Hosts that answered identically; `hosts` is folded (web[01-47])."""

    hosts: str
    count: int
    status: Status
    output: str | None = None
    data: dict[str, Any] | None = None
    output_ids: list[str] = Field(default_factory=list, description="identical outputs: page any one with output_page")
    next_cursor: str | None = Field(default=None, description="pass to output_page with output_ids[0] for more")
    total_lines: int | None = None


class HostFailure(BaseModel):
    host: str
    status: Status
    message: str
    hint: str | None = None
    stderr_tail: str | None = None


class FanoutResult(BaseModel):
    summary: Summary
    groups: list[Group]
    errors: list[HostFailure] = Field(default_factory=list)
    job_id: str | None = Field(default=None, description="hosts still running: poll job_status(job_id)")
    note: str | None = None
    # What only a view draws (MCP Apps): it rides the result's _meta, never the model's text or schema.
    view: SkipJsonSchema[dict[str, Any] | None] = Field(default=None, exclude=True)


class HostEntry(BaseModel):
    name: str
    address: str
    port: int | None = None
    user: str | None = None
    connection: str
    groups: list[str]
    become: bool = False


class HostList(BaseModel):
    pattern: str
    count: int
    hosts: str = Field(description="folded host list")
    groups: dict[str, str] = Field(description="group -> folded members (within the match)")
    details: list[HostEntry] = Field(default_factory=list)
    note: str | None = None


class Page(BaseModel):
    output_id: str
    host: str
    text: str
    start_line: int
    end_line: int
    total_lines: int
    next_cursor: str | None = None
    finished: bool
    truncated: bool = False


class SearchMatch(BaseModel):
    line: int
    text: str
    before: list[str] = Field(default_factory=list)
    after: list[str] = Field(default_factory=list)


class SearchResult(BaseModel):
    output_id: str
    host: str
    pattern: str
    matches: list[SearchMatch]
    scanned_lines: int
    total_lines: int
    more: bool
    next_cursor: str | None = None
    note: str | None = None


class JobInfo(BaseModel):
    job_id: str
    tool: str
    pattern: str
    hosts: str
    state: Literal["running", "done", "cancelled"]
    started: float
    elapsed_s: float
    detail: dict[str, Any] = Field(default_factory=dict)


class JobList(BaseModel):
    jobs: list[JobInfo]
