"""Event schemas: every breaking edit is caught, no safe one is flagged.

An event schema is checked both ways (consumers read new payloads; the log keeps old ones),
so widening a field's type is as breaking as narrowing it. The API's direction-aware corpus
is in tests/core/test_openapi_contracts.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from mercato.core.contracts import breaking_changes

BASE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "price": {"type": "string"},
        "count": {"type": "integer"},
        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "status": {"enum": ["open", "closed"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "owner": {"$ref": "#/$defs/Owner"},
    },
    "required": ["id", "price"],
    "$defs": {
        "Owner": {
            "type": "object",
            "properties": {"name": {"type": "string"}},
            "required": ["name"],
        }
    },
}


def edit(**changes: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {
        **BASE,
        "properties": {**BASE["properties"]},
        "$defs": {**BASE["$defs"]},
    }
    for key, value in changes.items():
        if key == "required":
            schema["required"] = value
        elif key == "defs":
            schema["$defs"] = value
        elif value is None:
            del schema["properties"][key]
        else:
            schema["properties"][key] = value
    return schema


BREAKING = {
    "field removed": edit(count=None),
    "field renamed": {
        **edit(count=None),
        "properties": {**edit(count=None)["properties"], "total": {"type": "integer"}},
    },
    "type changed": edit(count={"type": "string"}),
    "nullable made strict": edit(note={"type": "string"}),
    "new required field": {**edit(extra={"type": "string"}), "required": ["id", "price", "extra"]},
    "optional made required": edit(required=["id", "price", "count"]),
    "enum value removed": edit(status={"enum": ["open"]}),
    "array item type changed": edit(tags={"type": "array", "items": {"type": "integer"}}),
    # Consumers written for the old schema would meet a null, or a missing field.
    "field made nullable": edit(count={"anyOf": [{"type": "integer"}, {"type": "null"}]}),
    "required made optional": edit(required=["id"]),
    "constraint narrowed": edit(id={"type": "string", "maxLength": 10}),
    "nested field removed": edit(
        defs={"Owner": {"type": "object", "properties": {}, "required": []}}
    ),
}

SAFE = {
    "unchanged": edit(),
    "new optional field": edit(extra={"type": "string"}),
    "enum value added": edit(status={"enum": ["open", "closed", "archived"]}),
    "description added": edit(price={"type": "string", "description": "decimal"}),
    "description beside a reference": edit(owner={"$ref": "#/$defs/Owner", "description": "who"}),
    "title added": edit(tags={"type": "array", "items": {"type": "string"}, "title": "Tags"}),
}


@pytest.mark.parametrize("name", sorted(BREAKING))
def test_a_breaking_edit_is_refused(name: str) -> None:
    assert breaking_changes(BASE, BREAKING[name]), name


@pytest.mark.parametrize("name", sorted(SAFE))
def test_a_safe_edit_passes(name: str) -> None:
    assert breaking_changes(BASE, SAFE[name]) == [], name


def test_the_problems_name_the_field() -> None:
    assert breaking_changes(BASE, edit(count={"type": "string"})) == [
        "$.count: type changed from ['integer'] to ['string']"
    ]


def test_a_referenced_schema_is_reported_under_its_name() -> None:
    owner = {"type": "object", "properties": {}, "required": []}
    assert breaking_changes(BASE, edit(defs={"Owner": owner})) == [
        "#/$defs/Owner $.name: field removed"
    ]
