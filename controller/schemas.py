"""Compact JSON Schemas for tools/list: every byte there is paid for in each client's context.

pydantic's schemas repeat property names as titles, spell `X | None` as an anyOf
with a null default, and give output fields defaults no client uses.  The
compact form says the same: `{"type": ["string", "null"]}`.
"""

from __future__ import annotations

from typing import Any

_NAMED = ("properties", "$defs", "definitions", "patternProperties")  # maps of name -> schema


def compact(schema: Any, output: bool = False) -> Any:
    """The schema with titles dropped, nullable types folded, and (for outputs) no defaults."""
    if isinstance(schema, list):
        return [compact(item, output) for item in schema]
    if not isinstance(schema, dict):
        return schema
    node: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _NAMED and isinstance(value, dict):
            node[key] = {name: compact(sub, output) for name, sub in value.items()}
        elif (
            (key == "title" and isinstance(value, str))
            or (key == "default" and output)
            or (key == "additionalProperties" and value is True)
        ):
            continue
        else:
            node[key] = compact(value, output)
    return _fold_nullable(node)


def _fold_nullable(node: dict[str, Any]) -> dict[str, Any]:
    """anyOf [{type: T}, {type: null}] -> type [T, null], when the branches hold nothing else."""
    branches = node.get("anyOf")
    if not isinstance(branches, list) or len(branches) != 2:
        return node
    types = [b.get("type") for b in branches if isinstance(b, dict) and set(b) == {"type"}]
    if len(types) != 2 or "null" not in types or not all(isinstance(t, str) for t in types):
        return node
    folded = {k: v for k, v in node.items() if k != "anyOf"}
    folded["type"] = [t for t in types if t != "null"] + ["null"]
    return folded
