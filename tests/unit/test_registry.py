"""Tools register themselves: discovery finds every tool module's tools, and their MCP face is the plain function's."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing

from crashfleet.controller import registry, tools
from crashfleet.controller.runtime import Runtime
from crashfleet.controller.settings import Settings
from crashfleet.controller.tools import capture, fleet


def test_every_public_coroutine_taking_the_runtime_is_a_tool() -> None:
    """A tool function someone forgot to mark would be missing from MCP: none is."""
    found = {spec.name for spec in registry.discover()}
    for info in pkgutil.iter_modules(tools.__path__):
        module = importlib.import_module(f"{tools.__name__}.{info.name}")
        own = {
            n: f for n, f in vars(module).items() if callable(f) and getattr(f, "__module__", None) == module.__name__
        }
        if not any(hasattr(f, registry.MARK) for f in own.values()):
            continue  # a helper module (common, tracing, the pure analyses): no tools of its own
        for name, fn in own.items():
            takes_rt = inspect.iscoroutinefunction(fn) and list(inspect.signature(fn).parameters)[:1] == ["rt"]
            if takes_rt and not name.startswith("_"):
                assert name in found, f"{module.__name__}.{name} takes the runtime but is not a @tool"
    for spec in registry.discover():
        assert spec.title and spec.description and spec.annotations is not None, spec.name
        assert next(iter(inspect.signature(spec.fn).parameters)) == "rt", f"{spec.name} must take the runtime first"
    assert {"fleet_check", "job_status", "output_page", "bpftrace_run", "capture_start", "crash_open"} <= found


def test_the_mcp_face_keeps_arguments_drops_what_the_server_supplies() -> None:
    spec = next(s for s in registry.discover() if s.name == "fleet_run")
    face = registry.mcp_function(spec, Runtime.create(Settings()))
    params = inspect.signature(face).parameters
    assert list(params) == ["ctx", "command", "pattern", "duration", "timeout"]
    assert params["pattern"].default == "all", "the MCP default fleet_run declares over the function's"
    hints = typing.get_type_hints(face, include_extras=True)
    assert "rt" not in params and "progress" not in params
    assert typing.get_args(hints["command"])[1].description.startswith("catalogue command: ")


def test_hidden_parameters_are_left_out() -> None:
    spec = getattr(capture.capture_start, registry.MARK)
    face = registry.mcp_function(spec, Runtime.create(Settings()))
    assert "ring_bytes" not in inspect.signature(face).parameters
    assert "ring_bytes" in inspect.signature(capture.capture_start).parameters


def test_the_plain_function_is_unchanged() -> None:
    assert inspect.iscoroutinefunction(fleet.fleet_check) and not inspect.iscoroutinefunction(fleet.fleet_hosts)
    assert getattr(fleet.fleet_hosts, registry.MARK).name == "fleet_hosts"
