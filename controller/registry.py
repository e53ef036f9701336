"""Tools register themselves: `@tool(...)` on a plain function in controller/tools/, found by discovery.

A tool is a plain function `fn(rt, <its arguments>, progress=None) -> a pydantic model` (sync or async),
called as it is by the CLI and the tests. For MCP its signature is the schema: `rt` is supplied, a
`progress` parameter becomes MCP progress, the others (with their Annotated descriptions) are the
tool's arguments. Nothing else lists tools (CONTRIBUTING.md, "Adding a domain").
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ToolAnnotations

from . import budget, views
from .runtime import Runtime
from .wiring import answer, progress, sync

SUPPLIED = ("rt", "progress")  # parameters the server fills in, never arguments
MARK = "__crashfleet_tool__"


@dataclass(frozen=True)
class ToolSpec:
    fn: Callable[..., Any]
    title: str
    description: str
    annotations: ToolAnnotations
    hidden: tuple[str, ...] = ()  # parameters MCP does not offer: their defaults apply
    defaults: dict[str, Any] = field(default_factory=dict)  # MCP defaults where the function has none

    @property
    def name(self) -> str:
        return self.fn.__name__


def tool(
    title: str,
    description: str,
    annotations: ToolAnnotations,
    *,
    hide: tuple[str, ...] = (),
    defaults: dict[str, Any] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a plain function as an MCP tool; the function itself is unchanged."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, MARK, ToolSpec(fn, title, description, annotations, hide, dict(defaults or {})))
        return fn

    return mark


def discover() -> list[ToolSpec]:
    """Every tool in controller/tools/, module by module, in the order each module defines them."""
    from . import tools

    found: list[ToolSpec] = []
    for info in sorted(pkgutil.iter_modules(tools.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{tools.__name__}.{info.name}")
        specs = [getattr(v, MARK) for v in vars(module).values() if callable(v) and hasattr(v, MARK)]
        found += sorted((s for s in specs if s.fn.__module__ == module.__name__), key=_line)
    names = [spec.name for spec in found]
    twice = {name for name in names if names.count(name) > 1}
    if twice:
        raise RuntimeError(f"tools defined twice: {', '.join(sorted(twice))}")
    return found


def find(name: str) -> ToolSpec:
    """The tool of that name (tasks and `crashfleet call` reach tools by name)."""
    for spec in discover():
        if spec.name == name:
            return spec
    raise KeyError(name)


def register_all(mcp: MCPServer, rt: Runtime) -> None:
    for spec in discover():
        mcp.tool(
            name=spec.name,
            title=spec.title,
            description=spec.description,
            annotations=spec.annotations,
            meta=views.tool_meta(spec.name),  # the view a client with MCP Apps shows its answers in
        )(mcp_function(spec, rt))


def mcp_function(spec: ToolSpec, rt: Runtime) -> Callable[..., Any]:
    """The MCP face of a plain tool: its arguments, a Context when it reports progress, a CallToolResult."""
    hints = typing.get_type_hints(spec.fn, include_extras=True)
    signature = inspect.signature(spec.fn)
    wants_progress = "progress" in signature.parameters
    params = [
        p.replace(
            kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints[p.name], default=spec.defaults.get(p.name, p.default)
        )
        for p in signature.parameters.values()
        if p.name not in SUPPLIED and p.name not in spec.hidden
    ]
    if wants_progress:
        params.insert(0, inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context))
    params.sort(key=lambda p: p.default is not inspect.Parameter.empty)  # the schema lists required ones first

    async def call(**kwargs: Any) -> CallToolResult:
        ctx = kwargs.pop("ctx", None)
        if wants_progress:
            kwargs["progress"] = progress(ctx) if ctx is not None else None
        with budget.limit(rt.settings.call_budget):  # answer within the client's patience
            if inspect.iscoroutinefunction(spec.fn):
                return await answer(lambda: spec.fn(rt, **kwargs))
            return await answer(lambda: sync(spec.fn, rt, **kwargs))

    returns = Annotated[CallToolResult, hints["return"]]
    call.__signature__ = signature.replace(parameters=params, return_annotation=returns)  # type: ignore[attr-defined]
    call.__annotations__ = {p.name: p.annotation for p in params} | {"return": returns}
    call.__name__ = call.__qualname__ = spec.name
    call.__doc__ = spec.description
    return call


def _line(spec: ToolSpec) -> int:
    return spec.fn.__code__.co_firstlineno
