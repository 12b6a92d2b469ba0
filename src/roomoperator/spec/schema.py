"""The JSON Schema of a RoomSpec document, for editors (`# yaml-language-server: $schema=...`) and CI.

Generated from the pydantic models, so it cannot drift from what `roomop validate` accepts; the
committed copy `schemas/roomspec.schema.json` is kept equal to it by a test (`roomop schema` rewrites it).
"""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel

from roomoperator.spec.models import EntityPolicy, RoomSpec


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one RoomSpec document, in its camelCase wire form."""
    schema = _without_titles(RoomSpec.model_json_schema(by_alias=True, mode="validation"))
    _accept_alias_choices(schema["$defs"][EntityPolicy.__name__], EntityPolicy)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **schema,
        "title": "RoomSpec",
        "description": "A room's desired state: entities, artifacts, policies and resources (docs/spec.md).",
    }


def _without_titles(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's generated property titles ("Seedfrom"); the descriptions say more."""
    for definition in [schema, *schema.get("$defs", {}).values()]:
        for field_schema in definition.get("properties", {}).values():
            field_schema.pop("title", None)
    return schema


def _accept_alias_choices(definition: dict[str, Any], model: type[BaseModel]) -> None:
    """Fields accepted under several names (snake_case and camelCase policy keys) list every name."""
    properties: dict[str, Any] = definition["properties"]
    for info in model.model_fields.values():
        if not isinstance(info.validation_alias, AliasChoices):
            continue
        names = [str(choice) for choice in info.validation_alias.choices]
        first = next(name for name in names if name in properties)
        for name in names:
            properties.setdefault(name, properties[first])
