"""Every published event schema, from every context, and the files they are committed in.

`mercato schema events` writes `schemas/events/<type>.v<version>.json`; it refuses to
overwrite a published version with a breaking change (bump the version instead), and
`--check` fails when the live schemas differ from the committed ones. `mercato schema check`
lists every difference (`contract_changes`) and fails only on breaking ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mercato.catalog import EVENT_PAYLOADS as CATALOG_EVENTS
from mercato.core.contracts import Change, breaking_changes, schema_changes
from mercato.identity import EVENT_PAYLOADS as IDENTITY_EVENTS
from mercato.ingest import EVENT_PAYLOADS as INGEST_EVENTS
from mercato.orders import EVENT_PAYLOADS as ORDER_EVENTS

EVENT_PAYLOADS: dict[tuple[str, int], type[BaseModel]] = {
    **CATALOG_EVENTS,
    **IDENTITY_EVENTS,
    **INGEST_EVENTS,
    **ORDER_EVENTS,
}
SCHEMA_DIR = Path("schemas/events")


def schema_file(event_type: str, version: int) -> str:
    return f"{event_type}.v{version}.json"


def live_schemas() -> dict[str, dict[str, Any]]:
    return {
        schema_file(event_type, version): {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": f"{event_type} v{version} payload",
            **model.model_json_schema(),
        }
        for (event_type, version), model in sorted(EVENT_PAYLOADS.items())
    }


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def compare(directory: Path) -> tuple[list[str], list[str]]:
    """(breaking problems, files that differ or are missing) between live and committed."""
    breaking: list[str] = []
    stale: list[str] = []
    for name, schema in live_schemas().items():
        path = directory / name
        if not path.exists():
            stale.append(name)
            continue
        published = json.loads(path.read_text())
        breaking += [f"{name}: {problem}" for problem in breaking_changes(published, schema)]
        if path.read_text() != render(schema):
            stale.append(name)
    return breaking, stale


def contract_changes(directory: Path) -> list[Change]:
    """Every difference between the committed (published) schemas and the live ones."""
    live = live_schemas()
    committed = {path.name: json.loads(path.read_text()) for path in directory.glob("*.json")}
    changes: list[Change] = []
    for name in sorted(committed.keys() | live.keys()):
        if name not in live:
            # Consumers subscribed to it would silently stop receiving anything.
            changes.append(Change(name, "published schema no longer produced", breaking=True))
        elif name not in committed:
            changes.append(Change(name, "new event schema", breaking=False))
        else:
            changes += [
                Change(f"{name}: {change.location}", change.message, change.breaking)
                for change in schema_changes(committed[name], live[name])
            ]
    return changes


def write(directory: Path) -> list[str]:
    """Write every schema; refuses (returns the problems) if any would break a published one."""
    breaking, _ = compare(directory)
    if breaking:
        return breaking
    directory.mkdir(parents=True, exist_ok=True)
    for name, schema in live_schemas().items():
        (directory / name).write_text(render(schema))
    return []
