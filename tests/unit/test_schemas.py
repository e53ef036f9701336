"""schemas.compact: smaller tools/list schemas that still validate the same answers."""

from __future__ import annotations

from pydantic import BaseModel, Field

from crashfleet.controller import schemas
from crashfleet.controller.models import FanoutResult


class Doc(BaseModel):
    title: str = Field(description="a field named like a schema keyword")
    default: int | None = None
    tags: dict[str, str] | None = None


def test_nullable_types_fold_and_titles_go_but_fields_named_title_stay() -> None:
    schema = schemas.compact(Doc.model_json_schema(), output=True)
    assert "title" not in schema
    assert schema["properties"]["title"] == {"description": "a field named like a schema keyword", "type": "string"}
    assert schema["properties"]["default"] == {"type": ["integer", "null"]}  # anyOf folded, default dropped
    assert schema["properties"]["tags"]["anyOf"][1] == {"type": "null"}  # a branch with more than a type stays
    assert schema["required"] == ["title"]


def test_inputs_keep_their_defaults() -> None:
    schema = schemas.compact(Doc.model_json_schema())
    assert schema["properties"]["default"] == {"default": None, "type": ["integer", "null"]}


def test_fanout_schema_shrinks_and_keeps_its_shape() -> None:
    before = FanoutResult.model_json_schema()
    after = schemas.compact(before, output=True)
    assert len(str(after)) < 0.85 * len(str(before))
    assert after["required"] == before["required"] and set(after["$defs"]) == set(before["$defs"])
    assert after["properties"]["job_id"]["type"] == ["string", "null"]
