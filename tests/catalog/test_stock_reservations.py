"""The catalog's stock reservations for a service over HTTP, on the rolled-back test
connection: idempotent by the caller's id, all or nothing, released once, swept at their
deadline. (The order service using them over real ports: tests/orders/test_stock_*.py.)"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from mercato.catalog.reservations import sweep
from tests.database import SingleConnectionDatabase
from tests.factories import create_product

API = "/api/v1/stock/reservations"


@pytest.fixture
async def service(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, str]:
    created = await client.post(
        "/api/v1/api-keys", json={"name": "orders", "scopes": ["stock:reserve"]}, headers=admin
    )
    return {"Authorization": f"Bearer {created.json()['data']['key']}"}


def lines(*pairs: tuple[dict[str, Any], int]) -> dict[str, Any]:
    return {"lines": [{"product_id": p["id"], "quantity": q} for p, q in pairs]}


async def stock_of(conn: asyncpg.Connection, product: dict[str, Any]) -> int:
    count: int = await conn.fetchval(
        "SELECT inventory_count FROM catalog.products WHERE id = $1", uuid.UUID(product["id"])
    )
    return count


async def test_the_same_reservation_twice_answers_the_same_and_reserves_once(
    client: httpx.AsyncClient, admin: dict[str, str], service: dict[str, str], conn: Any
) -> None:
    mug = await create_product(client, admin, price="12.50", inventory_count=10)
    pen = await create_product(client, admin, price="0.99", inventory_count=3)
    path = f"{API}/{uuid.uuid4()}"
    first = await client.put(path, json=lines((pen, 2), (mug, 1), (pen, 1)), headers=service)
    assert first.status_code == 200, first.text
    again = await client.put(path, json=lines((mug, 1), (pen, 3)), headers=service)
    assert again.json() == first.json()
    reservation = first.json()["data"]
    assert reservation["status"] == "reserved"
    assert reservation["expires_at"] is not None
    assert {
        (line["sku"], line["unit_price"], line["quantity"]) for line in reservation["lines"]
    } == {
        (mug["sku"], "12.50", 1),
        (pen["sku"], "0.99", 3),
    }
    assert (await stock_of(conn, mug), await stock_of(conn, pen)) == (9, 0)

    other = await client.put(path, json=lines((mug, 2)), headers=service)
    assert (other.status_code, other.json()["error"]["code"]) == (422, "STOCK_RESERVATION_MISMATCH")


async def test_a_refused_reservation_takes_nothing_and_keeps_its_id_free(
    client: httpx.AsyncClient, admin: dict[str, str], service: dict[str, str], conn: Any
) -> None:
    plenty = await create_product(client, admin, inventory_count=10)
    scarce = await create_product(client, admin, inventory_count=1)
    path = f"{API}/{uuid.uuid4()}"
    refused = await client.put(path, json=lines((plenty, 4), (scarce, 2)), headers=service)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "OUT_OF_STOCK")
    assert (await stock_of(conn, plenty), await stock_of(conn, scarce)) == (10, 1)
    assert (await client.get(path, headers=service)).status_code == 404
    assert (await client.put(path, json=lines((plenty, 4)), headers=service)).status_code == 200


async def test_confirm_and_release_are_idempotent(
    client: httpx.AsyncClient, admin: dict[str, str], service: dict[str, str], conn: Any
) -> None:
    mug = await create_product(client, admin, inventory_count=5)
    path = f"{API}/{uuid.uuid4()}"
    await client.put(path, json=lines((mug, 2)), headers=service)
    for _ in range(2):
        confirmed = await client.post(f"{path}/confirm", headers=service)
        assert confirmed.json()["data"]["status"] == "confirmed"
        assert confirmed.json()["data"]["expires_at"] is None
    for _ in range(2):
        released = await client.post(f"{path}/release", headers=service)
        assert released.json()["data"]["status"] == "released"
    assert await stock_of(conn, mug) == 5
    late = await client.post(f"{path}/confirm", headers=service)
    assert (late.status_code, late.json()["error"]["code"]) == (409, "STOCK_RESERVATION_RELEASED")
    unknown = await client.post(f"{API}/{uuid.uuid4()}/confirm", headers=service)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (
        404,
        "STOCK_RESERVATION_NOT_FOUND",
    )


async def test_releasing_an_unknown_id_refuses_a_reserve_that_arrives_later(
    client: httpx.AsyncClient, admin: dict[str, str], service: dict[str, str], conn: Any
) -> None:
    mug = await create_product(client, admin, inventory_count=5)
    path = f"{API}/{uuid.uuid4()}"
    released = await client.post(f"{path}/release", headers=service)
    assert released.status_code == 200
    assert released.json()["data"] | {"id": None} == {
        "id": None,
        "status": "released",
        "expires_at": None,
        "lines": [],
    }
    late = await client.put(path, json=lines((mug, 1)), headers=service)
    assert (late.status_code, late.json()["error"]["code"]) == (409, "STOCK_RESERVATION_RELEASED")
    assert await stock_of(conn, mug) == 5


async def test_the_sweep_releases_unconfirmed_reservations_past_their_deadline_only(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    service: dict[str, str],
    conn: Any,
    db: SingleConnectionDatabase,
) -> None:
    mug = await create_product(client, admin, inventory_count=10)
    due, confirmed, fresh = (f"{API}/{uuid.uuid4()}" for _ in range(3))
    for path in (due, confirmed, fresh):
        await client.put(path, json=lines((mug, 2)), headers=service)
    await client.post(f"{confirmed}/confirm", headers=service)
    await conn.execute(
        "UPDATE catalog.stock_reservations SET expires_at = now() - interval '1 s'"
        " WHERE status = 'reserved' AND id = $1",
        uuid.UUID(due.rsplit("/", 1)[1]),
    )
    assert await sweep(db) == 1  # type: ignore[arg-type]
    assert await sweep(db) == 0  # type: ignore[arg-type]
    statuses = [
        (await client.get(path, headers=service)).json()["data"]["status"]
        for path in (due, confirmed, fresh)
    ]
    assert statuses == ["released", "confirmed", "reserved"]
    assert await stock_of(conn, mug) == 6
