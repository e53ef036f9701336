"""Result models of the dump tools."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SessionInfo(BaseModel):
    session_id: str = Field(description="HOST:ID; pass to crash_run, drgn_run, analysis_run")
    host: str
    vmcore: str
    vmlinux: str
    release: str | None = None
    arch: str | None = None
    format: str | None = None
    minimal: bool = False
    idle_s: float | None = None
    crash_pid: int | None = None
    drgn_pid: int | None = None


class CommandResult(BaseModel):
    """One command's answer: its first page; the whole output stays on the host."""

    session_id: str
    command: str
    ended: str = Field(description="done, interrupted (timeout/cancel), restarted, killed, or running (see job_id)")
    text: str
    output_id: str | None = Field(description="page it with output_page, grep it with output_search")
    total_lines: int
    next_cursor: str | None = None
    truncated: bool = False
    note: str | None = None
    cap: str | None = Field(default=None, description="the cap or budget that stopped it (output, memory, timeout...)")
    ok: bool | None = None
    value: str | None = Field(default=None, description="drgn: the last expression's value")
    error: str | None = None
    job_id: str | None = Field(default=None, description="still running: job_status / job_cancel")


class CrashOpen(BaseModel):
    session: SessionInfo | None = Field(default=None, description="None while it still opens: see job_id")
    reused: bool = False
    summary: CommandResult | None = Field(default=None, description="crash's `sys` (minimal mode: the log's tail)")
    job_id: str | None = Field(
        default=None, description="still opening when the call had to answer: job_status(job_id)"
    )
    note: str | None = None
    notes: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list, description="crash misreads this kernel: what to trust")
    modules_loaded: list[str] | None = Field(
        default=None,
        description="modules=true: the modules crash has symbols "
        "for (fetched by build id); the notes say which were not",
    )
    modules_failed: dict[str, str] = Field(default_factory=dict, description="fetched, but crash's mod -s failed")


class SessionList(BaseModel):
    sessions: list[SessionInfo]
    note: str | None = None


class ScriptInfo(BaseModel):
    name: str
    description: str
    source: str = Field(description="bundled (on the agent) or a CRASHFLEET_DRGN_SCRIPTS dir")


class ScriptList(BaseModel):
    host: str
    scripts: list[ScriptInfo]
    drgn_code: bool = Field(description="False: this host runs only bundled scripts")
