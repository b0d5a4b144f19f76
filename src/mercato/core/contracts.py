"""Data contracts: how a new JSON Schema differs from a published one, and what that breaks.

A schema is published once its file is committed. Who is broken by a change depends on which
way the data flows:

- `REQUEST`: the other side *sends* data the schema describes (an API request body or
  parameter). The new schema must still accept everything the old one accepted: a removed
  field, a new required field, a narrower type or constraint (`maxLength` lowered,
  `minimum` raised, a `pattern` added, …) or a removed enum value breaks senders.
- `RESPONSE`: the other side *receives* it (an API response). The new schema must promise
  everything the old one did: a removed field, a field that may now be absent, a changed or
  widened type (`null` where there was none) or a removed enum value breaks readers.

Event payloads flow both ways: consumers read new payloads, and the log keeps old ones that
the schema must still describe, so `breaking_changes` checks both. Every other difference is
still reported, as a non-breaking change.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

Schema = dict[str, Any]


class Direction(Enum):
    REQUEST = "request"
    RESPONSE = "response"


BOTH = frozenset(Direction)


@dataclass(frozen=True)
class Change:
    location: str
    message: str
    breaking: bool

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


# Bounds a new schema may only move outwards without refusing what the old one accepted.
UPPER_BOUNDS = ("maxLength", "maximum", "exclusiveMaximum", "maxItems", "maxProperties")
LOWER_BOUNDS = ("minLength", "minimum", "exclusiveMinimum", "minItems", "minProperties")
# Keywords whose addition or change narrows what is accepted (no cheap way to prove a new
# pattern or format accepts everything the old one did, so any change counts).
EXACT = ("pattern", "format", "multipleOf", "const", "uniqueItems")


def schema_changes(published: Schema, proposed: Schema) -> list[Change]:
    """Every difference of an event schema (checked both ways), breaking or not."""
    return SchemaComparison(published, proposed).compare(published, proposed, BOTH, "$")


def breaking_changes(published: Schema, proposed: Schema) -> list[str]:
    """Every breaking difference of an event schema, as readable lines (empty when compatible)."""
    return [str(change) for change in schema_changes(published, proposed) if change.breaking]


class SchemaComparison:
    """Compares schemas of two documents, resolving local `$ref`s (`#/$defs/…`,
    `#/components/schemas/…`) in each. A referenced schema is compared once per direction and
    reported at its own name, so a change to a shared model is one line, not one per use."""

    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_root, self.new_root = old_root, new_root
        self._seen: set[tuple[str, str, frozenset[Direction]]] = set()

    def compare(
        self, old: Schema, new: Schema, directions: frozenset[Direction], location: str
    ) -> list[Change]:
        return list(self._compare(old, new, directions, location))

    def _compare(
        self, old: Schema, new: Schema, directions: frozenset[Direction], at: str
    ) -> Iterator[Change]:
        old_ref, new_ref = old.get("$ref"), new.get("$ref")
        if isinstance(old_ref, str) and isinstance(new_ref, str):
            key = (old_ref, new_ref, directions)
            if key in self._seen:
                return  # reported where it was first reached (and recursive models end here)
            self._seen.add(key)
            at = _component_location(old_ref, new_ref, directions)
        old, new = _resolve(old, self.old_root), _resolve(new, self.new_root)
        old_variants = _variants(old, self.old_root)
        new_variants = _variants(new, self.new_root)
        yield from _type_changes(set(old_variants), set(new_variants), directions, at)
        for kind in sorted(old_variants.keys() & new_variants.keys()):
            yield from self._compare_variant(old_variants[kind], new_variants[kind], directions, at)

    def _compare_variant(
        self, old: Schema, new: Schema, directions: frozenset[Direction], at: str
    ) -> Iterator[Change]:
        if "$ref" in old or "$ref" in new:
            yield from self._compare(old, new, directions, at)
            return
        yield from _enum_changes(old, new, directions, at)
        yield from _constraint_changes(old, new, directions, at)
        yield from self._object_changes(old, new, directions, at)
        if isinstance(old.get("items"), dict) and isinstance(new.get("items"), dict):
            yield from self._compare(old["items"], new["items"], directions, f"{at}[]")

    def _object_changes(
        self, old: Schema, new: Schema, directions: frozenset[Direction], at: str
    ) -> Iterator[Change]:
        request, response = Direction.REQUEST in directions, Direction.RESPONSE in directions
        old_props: dict[str, Schema] = old.get("properties", {})
        new_props: dict[str, Schema] = new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        for name in sorted(old_props.keys() - new_props.keys()):
            yield Change(f"{at}.{name}", "field removed", breaking=True)
        for name in sorted(new_props.keys() - old_props.keys()):
            if name in new_required:
                yield Change(f"{at}.{name}", "new required field", breaking=request)
            else:
                yield Change(f"{at}.{name}", "new optional field", breaking=False)
        for name in sorted(old_props.keys() & new_props.keys()):
            if name in new_required and name not in old_required:
                yield Change(f"{at}.{name}", "field is now required", breaking=request)
            if name in old_required and name not in new_required:
                yield Change(f"{at}.{name}", "field is no longer required", breaking=response)
            yield from self._compare(old_props[name], new_props[name], directions, f"{at}.{name}")
        old_extra, new_extra = old.get("additionalProperties"), new.get("additionalProperties")
        if old_extra is not False and new_extra is False and _is_object(old):
            yield Change(at, "additional fields are now refused", breaking=request)
        elif old_extra is False and new_extra not in (False, None):
            yield Change(at, "additional fields are now allowed", breaking=response)
        if isinstance(old_extra, dict) and isinstance(new_extra, dict):
            yield from self._compare(old_extra, new_extra, directions, f"{at}.*")
        old_names, new_names = old.get("propertyNames"), new.get("propertyNames")
        if isinstance(old_names, dict) and isinstance(new_names, dict):
            yield from self._compare(old_names, new_names, directions, f"{at}{{keys}}")


def _type_changes(
    old: set[str], new: set[str], directions: frozenset[Direction], at: str
) -> Iterator[Change]:
    if old == new:
        return
    lost = {kind for kind in old if not _covered(kind, new)}  # senders' values now refused
    gained = {kind for kind in new if not _covered(kind, old)}  # readers' values unexpected
    breaking = (Direction.REQUEST in directions and bool(lost)) or (
        Direction.RESPONSE in directions and bool(gained)
    )
    yield Change(at, f"type changed from {sorted(old)} to {sorted(new)}", breaking=breaking)


def _enum_changes(
    old: Schema, new: Schema, directions: frozenset[Direction], at: str
) -> Iterator[Change]:
    old_values, new_values = _enum(old), _enum(new)
    if old_values is None and new_values is not None:
        breaking = Direction.REQUEST in directions
        yield Change(at, f"values restricted to the enum {new_values}", breaking=breaking)
    if old_values is not None and new_values is None:
        breaking = Direction.RESPONSE in directions
        yield Change(at, "enum restriction removed", breaking=breaking)
    if old_values is None or new_values is None:
        return
    # A removed value breaks both ways: senders of it are refused, and readers' code written
    # for the enum (generated clients, exhaustive matches) no longer fits.
    if removed := sorted(set(old_values) - set(new_values)):
        yield Change(at, f"enum values removed: {removed}", breaking=True)
    if added := sorted(set(new_values) - set(old_values)):
        yield Change(at, f"enum values added: {added}", breaking=False)


def _constraint_changes(
    old: Schema, new: Schema, directions: frozenset[Direction], at: str
) -> Iterator[Change]:
    request = Direction.REQUEST in directions
    for keyword in (*UPPER_BOUNDS, *LOWER_BOUNDS):
        before, after = old.get(keyword), new.get(keyword)
        if before == after:
            continue
        upper = keyword in UPPER_BOUNDS
        if after is None:
            yield Change(at, f"{keyword} {before} removed", breaking=False)
        elif before is None:
            yield Change(at, f"{keyword} {after} added", breaking=request)
        else:
            narrowed = after < before if upper else after > before
            verb = "lowered" if after < before else "raised"
            yield Change(
                at, f"{keyword} {verb} from {before} to {after}", breaking=request and narrowed
            )
    for keyword in EXACT:
        before, after = old.get(keyword), new.get(keyword)
        if before == after:
            continue
        if after is None:
            yield Change(at, f"{keyword} {before!r} removed", breaking=False)
        elif before is None:
            yield Change(at, f"{keyword} {after!r} added", breaking=request)
        else:
            yield Change(at, f"{keyword} changed from {before!r} to {after!r}", breaking=request)


def _variants(schema: Schema, root: Schema) -> dict[str, Schema]:
    """The schema split by JSON type ("string", "null", …): `anyOf`/`oneOf` options and
    `type` lists become one entry per type, so `X | None` compares like `X`. A referenced
    option stays a reference, so that it is compared (and reported) under its own name."""
    schema = _resolve(schema, root)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options is None and len(schema.get("allOf", [])) == 1:
        options = schema["allOf"]
    if options is None:
        return {kind: schema for kind in _kinds(schema)}
    variants: dict[str, Schema] = {}
    for option in options:
        for kind, variant in _variants(option, root).items():
            variants.setdefault(kind, option if "$ref" in option else variant)
    return variants


def _resolve(schema: Schema, root: Schema) -> Schema:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    target: Any = root
    for part in ref.removeprefix("#/").split("/"):
        target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
    return _resolve(target, root) if isinstance(target, dict) else {}


def _kinds(schema: Schema) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, list):
        return [str(k) for k in kind]
    if isinstance(kind, str):
        return [kind]
    values = _enum(schema)
    if values:
        return sorted({_json_type(value) for value in values})
    if "properties" in schema:
        return ["object"]
    return ["any"]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _enum(schema: Schema) -> list[Any] | None:
    if "enum" in schema:
        return list(schema["enum"])
    if "const" in schema:
        return [schema["const"]]
    return None


def _covered(kind: str, kinds: set[str]) -> bool:
    return kind in kinds or "any" in kinds or (kind == "integer" and "number" in kinds)


def _is_object(schema: Schema) -> bool:
    return "object" in _kinds(schema)


def _component_location(old_ref: str, new_ref: str, directions: frozenset[Direction]) -> str:
    old_name, new_name = old_ref.rsplit("/", 1)[-1], new_ref.rsplit("/", 1)[-1]
    name = old_name if old_name == new_name else f"{old_name} → {new_name}"
    if directions == BOTH:
        return f"{old_ref if old_ref == new_ref else name} $"
    return f"{next(iter(directions)).value} schema {name} $"
