"""What every client pays in context for crashfleet's tools: names, descriptions and input schemas
(tools/list as the model sees it) stay under 12 KB."""

from __future__ import annotations

import json
from pathlib import Path

from crashfleet.controller.runtime import Runtime
from crashfleet.controller.schemas import compact
from crashfleet.controller.server import build_server
from crashfleet.controller.settings import Settings

BUDGET = 12_000


async def test_model_visible_tools_list_stays_under_12_kb(tmp_path: Path) -> None:
    rt = Runtime.create(Settings(audit_log=tmp_path / "audit.jsonl"))
    try:
        listed = await build_server(rt).list_tools()
    finally:
        await rt.close()
    visible = [{"name": t.name, "description": t.description, "inputSchema": compact(t.input_schema)} for t in listed]
    size = len(json.dumps(visible, separators=(",", ":")))
    biggest = sorted(((len(json.dumps(v, separators=(",", ":"))), v["name"]) for v in visible), reverse=True)[:5]
    assert size < BUDGET, f"{size} bytes; the largest: {biggest}"
