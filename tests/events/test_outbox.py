"""Use cases write their events to the outbox in their own transaction, and only then."""

from __future__ import annotations

import asyncpg
import httpx

from tests.factories import create_category, create_product, if_match, product_payload


async def _outbox(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT type, aggregate_type, aggregate_id, aggregate_version, payload, trace_context "
        "FROM events.outbox ORDER BY seq"
    )


async def test_each_catalog_change_records_its_event(
    client: httpx.AsyncClient, admin: dict[str, str], conn: asyncpg.Connection
) -> None:
    category = await create_category(client, admin)
    product = await create_product(client, admin, category_id=category["id"], inventory_count=3)
    url = f"/api/v1/products/{product['id']}"
    await client.patch(url, json={"inventory_count": 7}, headers={**admin, **if_match(1)})
    await client.delete(url, headers={**admin, **if_match(2)})
    await client.post(f"{url}/restore", headers=admin)

    events = await _outbox(conn)
    assert [(e["type"], e["aggregate_version"]) for e in events] == [
        ("category.created", 1),
        ("product.created", 1),
        ("product.updated", 2),
        ("inventory.changed", 2),
        ("product.deleted", 3),
        ("product.restored", 4),
    ]
    assert events[1]["payload"] == product
    assert events[3]["payload"] == {
        "product_id": product["id"],
        "inventory_count": 7,
        "previous_count": 3,
        "visible": True,
    }
    assert events[1]["trace_context"]["request_id"]


async def test_a_failed_write_records_no_event(
    client: httpx.AsyncClient, admin: dict[str, str], conn: asyncpg.Connection
) -> None:
    product = await create_product(client, admin)
    before = len(await _outbox(conn))
    duplicate = await client.post(
        "/api/v1/products", json=product_payload(sku=product["sku"]), headers=admin
    )
    assert duplicate.status_code == 409
    stale = await client.patch(
        f"/api/v1/products/{product['id']}", json={"name": "x"}, headers={**admin, **if_match(9)}
    )
    assert stale.status_code == 412
    assert len(await _outbox(conn)) == before


async def test_moving_a_category_records_its_descendants_changes(
    client: httpx.AsyncClient, admin: dict[str, str], conn: asyncpg.Connection
) -> None:
    a = await create_category(client, admin)
    child = await create_category(client, admin, parent_id=a["id"])
    b = await create_category(client, admin)
    await client.patch(
        f"/api/v1/categories/{a['id']}",
        json={"parent_id": b["id"]},
        headers={**admin, **if_match(1)},
    )
    events = await _outbox(conn)
    moved = [
        (e["aggregate_id"], e["aggregate_version"])
        for e in events
        if e["type"] == "category.updated"
    ]
    assert sorted(moved) == sorted([(a["id"], 2), (child["id"], 2)])
