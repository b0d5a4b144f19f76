"""Orders racing for stock on real transactions: a pool, hundreds of clients, real rows."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from mercato.app import create_app
from mercato.core.database import Database
from mercato.orders.service import expire_due_orders
from tests.factories import TestUser, identity_runtime, make_user, product_payload
from tests.settings import make_settings

API = "/api/v1"
pytestmark = pytest.mark.slow


@pytest.fixture
async def shop(fresh_db_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(database_url=fresh_db_url, db_pool_max=20))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def people(database_url: str, customers: int) -> tuple[dict[str, str], list[TestUser]]:
    async with identity_runtime(database_url) as runtime, runtime.db.transaction() as conn:
        admin = await make_user(conn, runtime, roles=("admin",))
        return admin.headers, [await make_user(conn, runtime) for _ in range(customers)]


async def product(shop: httpx.AsyncClient, admin: dict[str, str], stock: int) -> str:
    created = await shop.post(
        f"{API}/products", json=product_payload(inventory_count=stock), headers=admin
    )
    return str(created.json()["data"]["id"])


def order(customer: TestUser, lines: list[tuple[str, int]], key: str | None = None) -> Any:
    return {
        "json": {"lines": [{"product_id": p, "quantity": q} for p, q in lines]},
        "headers": {**customer.headers, "Idempotency-Key": key or uuid.uuid4().hex},
    }


async def stock(database_url: str, product_ids: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT id, inventory_count FROM catalog.products WHERE id = ANY($1::uuid[])",
            [uuid.UUID(p) for p in product_ids],
        )
    finally:
        await conn.close()
    return {str(row["id"]): row["inventory_count"] for row in rows}


async def test_two_hundred_orders_for_fifty_items_sell_exactly_fifty(
    shop: httpx.AsyncClient, fresh_db_url: str
) -> None:
    admin, customers = await people(fresh_db_url, 10)
    item = await product(shop, admin, stock=50)
    answers = await asyncio.gather(
        *(shop.post(f"{API}/orders", **order(customers[n % 10], [(item, 1)])) for n in range(200))
    )
    codes = Counter(a.status_code for a in answers)
    assert codes == {201: 50, 409: 150}, codes
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {"OUT_OF_STOCK"}
    assert (await stock(fresh_db_url, [item]))[item] == 0


async def test_mixed_orders_in_random_line_order_never_deadlock_or_oversell(
    shop: httpx.AsyncClient, fresh_db_url: str
) -> None:
    admin, customers = await people(fresh_db_url, 10)
    items = [await product(shop, admin, stock=30) for _ in range(5)]
    rng = random.Random(7)
    requests = []
    for n in range(150):
        chosen = rng.sample(items, rng.randint(1, 4))  # a random subset, in random order
        requests.append(order(customers[n % 10], [(p, rng.randint(1, 3)) for p in chosen]))
    answers = await asyncio.gather(*(shop.post(f"{API}/orders", **r) for r in requests))
    assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers][:3]
    sold: Counter[str] = Counter()
    for answer in answers:
        if answer.status_code == 201:
            for line in answer.json()["data"]["lines"]:
                sold[line["product_id"]] += line["quantity"]
    left = await stock(fresh_db_url, items)
    for item in items:
        assert left[item] >= 0
        assert left[item] == 30 - sold[item]

    # Every reservation runs out: concurrent sweepers give all the stock back, once.
    conn = await asyncpg.connect(fresh_db_url)
    try:
        await conn.execute(
            "UPDATE orders.orders SET reservation_expires_at = now() - interval '1 s'"
        )
    finally:
        await conn.close()
    sweepers = [await Database.connect(fresh_db_url, min_size=1, max_size=2) for _ in range(3)]
    try:
        expired = await asyncio.gather(*(expire_due_orders(db, batch=7) for db in sweepers))
    finally:
        for db in sweepers:
            await db.close()
    assert sum(expired) == sum(1 for a in answers if a.status_code == 201)
    assert await stock(fresh_db_url, items) == dict.fromkeys(items, 30)


async def test_one_idempotency_key_sent_concurrently_places_one_order(
    shop: httpx.AsyncClient, fresh_db_url: str
) -> None:
    admin, (customer,) = await people(fresh_db_url, 1)
    item = await product(shop, admin, stock=10)
    request = order(customer, [(item, 2)], key="checkout-42")
    answers = await asyncio.gather(*(shop.post(f"{API}/orders", **request) for _ in range(12)))
    originals = [
        a for a in answers if a.status_code == 201 and "idempotent-replayed" not in a.headers
    ]
    assert len(originals) == 1
    for answer in answers:
        if answer.status_code == 201:
            assert answer.json()["data"]["id"] == originals[0].json()["data"]["id"]
        else:
            assert answer.status_code == 409
            assert answer.json()["error"]["code"] == "IDEMPOTENCY_KEY_IN_USE"
    assert (await stock(fresh_db_url, [item]))[item] == 8
