"""The MCP server class: tools with titles and icons, outputs as resources, validated playbook prompts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, InputRequiredResult, Resource, ResourceLink, ResourceTemplate, Tool

from . import consent, prompts, resources
from .icon import icons
from .runtime import Runtime


class CrashfleetServer(MCPServer[Any]):
    """MCPServer plus what crashfleet adds at the protocol level; tools stay plain functions elsewhere."""

    def __init__(self, rt: Runtime, **kwargs: Any) -> None:
        super().__init__(icons=icons(), **kwargs)
        self.rt = rt
        prompts.register(self)

    async def list_tools(self) -> list[Tool]:
        listed = await super().list_tools()
        return [tool.model_copy(update={"icons": icons()}) for tool in listed]

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None) -> Any:
        if context is not None:  # a heavy action waits for the person's yes (controller/consent.py)
            verdict = await consent.ask(self.rt, name, arguments, context)
            if verdict is not None:
                return verdict
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
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        if str(uri).startswith("ui://"):  # a view's page (controller/views)
            return await super().read_resource(uri, context)
        text, meta = await resources.read(self.rt, str(uri))
        return [ReadResourceContents(content=text, mime_type="text/plain", meta=meta)]

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[Any, Any] | None = None
    ) -> Any:
        prompts.check_arguments(name, arguments)  # before the SDK's own checks: ours name the valid arguments
        return await super().get_prompt(name, arguments, context)
