"""The MCP server class: tools with titles and icons, outputs as resources, validated playbook prompts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, Resource, ResourceLink, ResourceTemplate, Tool

from . import prompts, resources
from .icon import icons
from .runtime import Runtime

TITLES = {
    "fleet_hosts": "List hosts",
    "fleet_check": "Check hosts",
    "fleet_run": "Run a command",
    "output_page": "Read an output",
    "output_search": "Search an output",
    "jobs_list": "List jobs",
    "job_status": "Job status",
    "job_cancel": "Cancel a job",
    "capture_interfaces": "Network interfaces",
    "capture_start": "Start a capture",
    "capture_status": "Capture status",
    "capture_stop": "Stop a capture",
    "capture_summary": "Capture summary",
    "capture_packets": "Captured packets",
    "dumps_list": "Find crash dumps",
    "crash_open": "Open a crash dump",
    "sessions_list": "List dump sessions",
    "session_close": "Close a dump session",
    "crash_run": "Run a crash command",
    "drgn_run": "Run drgn code",
    "analysis_scripts": "List analysis scripts",
    "analysis_run": "Run an analysis script",
    "analysis_fleet": "Run an analysis script fleet-wide",
    "crash_triage": "Triage crash dumps",
    "bpftrace_info": "bpftrace facts",
    "bpftrace_probes": "List probes",
    "bpftrace_tools": "bpftrace tool library",
    "bpftrace_run": "Trace with bpftrace",
    "bpftrace_result": "bpftrace result",
    "report_build": "Build an incident report",
}


class CrashfleetServer(MCPServer[Any]):
    """MCPServer plus what crashfleet adds at the protocol level; tools stay plain functions elsewhere."""

    def __init__(self, rt: Runtime, **kwargs: Any) -> None:
        super().__init__(icons=icons(), **kwargs)
        self.rt = rt
        prompts.register(self)

    async def list_tools(self) -> list[Tool]:
        listed = await super().list_tools()
        return [
            tool.model_copy(update={"title": tool.title or TITLES.get(tool.name), "icons": icons()}) for tool in listed
        ]

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None) -> Any:
        result = await super().call_tool(name, arguments, context)
        if isinstance(result, CallToolResult) and not result.is_error:
            if isinstance(result.structured_content, dict):  # a report finds it again by the ids it names
                self.rt.results.add(name, result.structured_content)
            for item in result.content:  # what the answer linked to, for resources/list
                if isinstance(item, ResourceLink):
                    self.rt.outputs.add(item.name, name)
        return result

    async def list_resources(self) -> list[Resource]:
        return await super().list_resources() + self.rt.outputs.resources()

    async def list_resource_templates(self) -> list[ResourceTemplate]:
        return await super().list_resource_templates() + [resources.template()]

    async def read_resource(
        self,
        uri: Any,
        context: Context[Any, Any] | None = None,
    ) -> Iterable[ReadResourceContents]:
        text, meta = await resources.read(self.rt, str(uri))
        return [ReadResourceContents(content=text, mime_type="text/plain", meta=meta)]

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[Any, Any] | None = None
    ) -> Any:
        prompts.check_arguments(name, arguments)  # before the SDK's own checks: ours name the valid arguments
        return await super().get_prompt(name, arguments, context)
