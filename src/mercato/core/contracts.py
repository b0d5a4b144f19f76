"""Data contracts: is a new JSON Schema a breaking change to a published one?

A schema is published once its file is committed. Consumers written against it must keep
working, so relative to the published schema a new one may add optional fields and loosen
nothing that matters to them, but may not:
- remove (or rename) a field,
- change a field's type,
- make a field required that was not,
- remove a value from an enum.
"""

from __future__ import annotations

from typing import Any


def breaking_changes(published: dict[str, Any], proposed: dict[str, Any]) -> list[str]:
    """Every breaking difference, as readable lines (empty when compatible)."""
    return _compare(published, proposed, published, proposed, path="$")


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        resolved: dict[str, Any] = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
        return resolved
    return schema


def _types(schema: dict[str, Any], root: dict[str, Any]) -> set[str]:
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        return set().union(*(_types(option, root) for option in schema["anyOf"]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return set(kind)
    if isinstance(kind, str):
        return {kind}
    if "enum" in schema or "const" in schema:
        return {"enum"}
    return {"any"}


def _compare(
    old: dict[str, Any],
    new: dict[str, Any],
    old_root: dict[str, Any],
    new_root: dict[str, Any],
    *,
    path: str,
) -> list[str]:
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    problems: list[str] = []
    old_types, new_types = _types(old, old_root), _types(new, new_root)
    if "any" not in new_types and not old_types <= new_types:
        problems.append(f"{path}: type changed from {sorted(old_types)} to {sorted(new_types)}")
    removed_values = set(map(str, old.get("enum", []))) - set(map(str, new.get("enum", [])))
    if "enum" in old and "enum" in new and removed_values:
        problems.append(f"{path}: enum values removed: {sorted(removed_values)}")
    old_props: dict[str, Any] = old.get("properties", {})
    new_props: dict[str, Any] = new.get("properties", {})
    for name, old_field in old_props.items():
        if name not in new_props:
            problems.append(f"{path}.{name}: field removed")
            continue
        problems += _compare(old_field, new_props[name], old_root, new_root, path=f"{path}.{name}")
    newly_required = set(new.get("required", [])) - set(old.get("required", []))
    for name in sorted(newly_required):
        problems.append(f"{path}.{name}: field is now required")
    if "items" in old and "items" in new:
        problems += _compare(old["items"], new["items"], old_root, new_root, path=f"{path}[]")
    return problems
