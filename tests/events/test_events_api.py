from __future__ import annotations

import asyncpg
import httpx

from mercato.events.repository import move_outbox_to_log
from tests.factories import create_product


async def test_staff_read_the_log_in_position_order(
    client: httpx.AsyncClient, admin: dict[str, str], conn: asyncpg.Connection
) -> None:
    first = await create_product(client, admin)
    second = await create_product(client, admin)
    async with conn.transaction():
        last = await move_outbox_to_log(conn, limit=100)

    response = await client.get("/api/v1/events", params={"after": last - 2}, headers=admin)
    assert response.status_code == 200
    body = response.json()
    assert [e["aggregate_id"] for e in body["data"]] == [first["id"], second["id"]]
    assert [e["position"] for e in body["data"]] == [last - 1, last]
    assert body["meta"] == {"after": last - 2, "next_after": last, "last_position": last}
    only = await client.get(
        "/api/v1/events", params={"after": 0, "type": "category.created"}, headers=admin
    )
    assert all(e["type"] == "category.created" for e in only.json()["data"])


async def test_the_log_is_not_public(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/events")).status_code == 401
