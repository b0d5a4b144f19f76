"""Event schemas: committed, never broken once published, and honoured by what is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import asyncpg
import httpx

from mercato.cli.schema import EVENT_SCHEMAS
from mercato.event_contracts import EVENT_PAYLOADS, SCHEMA_DIR, compare, live_schemas, write
from tests.factories import create_category, create_product, if_match

COMMITTED = Path(__file__).resolve().parents[2] / "schemas" / "events"


def test_the_committed_schemas_match_the_code() -> None:
    breaking, stale = compare(COMMITTED)
    assert breaking == []
    assert stale == [], "run `mercato schema events` and commit schemas/events/"


def test_a_breaking_change_to_a_published_schema_is_refused(tmp_path: Path) -> None:
    assert write(tmp_path) == []
    published = tmp_path / "product.created.v1.json"
    schema = json.loads(published.read_text())
    schema["properties"]["legacy_code"] = {"type": "string"}  # a field the code no longer has
    published.write_text(json.dumps(schema))

    problems = write(tmp_path)
    assert problems == ["product.created.v1.json: $.legacy_code: field removed"]
    assert json.loads(published.read_text())["properties"]["legacy_code"] == {"type": "string"}


def test_every_event_type_has_a_schema() -> None:
    assert len(live_schemas()) == len(EVENT_PAYLOADS)


async def test_recorded_payloads_conform_to_their_published_schema(
    client: httpx.AsyncClient, admin: dict[str, str], conn: asyncpg.Connection
) -> None:
    category = await create_category(client, admin)
    product = await create_product(client, admin, category_id=category["id"])
    await client.patch(
        f"/api/v1/products/{product['id']}",
        json={"inventory_count": 9},
        headers={**admin, **if_match(1)},
    )
    rows = await conn.fetch("SELECT type, schema_version, payload FROM events.outbox ORDER BY seq")
    assert {row["type"] for row in rows} >= {
        "category.created",
        "product.created",
        "product.updated",
        "inventory.changed",
    }
    for row in rows:
        model = EVENT_PAYLOADS[(row["type"], row["schema_version"])]
        model.model_validate(row["payload"])


def test_the_cli_publishes_event_schemas_where_the_contracts_live() -> None:
    # cli/schema.py names the directory itself, so that the CLI does not import every
    # context's models at start.
    assert EVENT_SCHEMAS == SCHEMA_DIR
