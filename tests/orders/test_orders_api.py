"""Orders through the HTTP API: placing, idempotency, access, cancellation, expiry."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from mercato.identity import IdentityRuntime
from mercato.orders.service import expire_due_orders
from tests.database import SingleConnectionDatabase
from tests.factories import TestUser, create_product, make_user

API = "/api/v1"


def keyed(headers: dict[str, str], key: str | None = None) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key or uuid.uuid4().hex}


def lines(*pairs: tuple[dict[str, Any], int]) -> dict[str, Any]:
    return {"lines": [{"product_id": p["id"], "quantity": q} for p, q in pairs]}


async def stock_of(conn: asyncpg.Connection, product: dict[str, Any]) -> int:
    count: int = await conn.fetchval(
        "SELECT inventory_count FROM catalog.products WHERE id = $1", uuid.UUID(product["id"])
    )
    return count


async def place(
    client: httpx.AsyncClient, user: TestUser, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    return await client.post(f"{API}/orders", json=body, headers=keyed(user.headers, key))


async def test_an_order_reserves_stock_and_freezes_prices(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser, conn: asyncpg.Connection
) -> None:
    mug = await create_product(client, admin, price="12.50", inventory_count=10)
    pen = await create_product(client, admin, price="0.99", inventory_count=3)
    response = await place(client, customer, lines((mug, 2), (pen, 3), (mug, 1)))
    assert response.status_code == 201, response.text
    order = response.json()["data"]
    assert response.headers["location"] == f"/api/v1/orders/{order['id']}"
    assert order["status"] == "pending_payment"
    assert order["customer_id"] == str(customer.id)
    assert [(line["sku"], line["quantity"], line["line_total"]) for line in order["lines"]] == [
        (mug["sku"], 3, "37.50"),
        (pen["sku"], 3, "2.97"),
    ]
    assert Decimal(order["total"]) == Decimal("40.47")
    assert order["item_count"] == 6
    assert order["reservation_expires_at"] is not None
    assert (await stock_of(conn, mug), await stock_of(conn, pen)) == (7, 0)

    # A later price change does not touch the order.
    await client.patch(
        f"{API}/products/{mug['id']}", json={"price": "99.00"}, headers={**admin, "If-Match": "*"}
    )
    read = await client.get(f"{API}/orders/{order['id']}", headers=customer.headers)
    assert read.json()["data"]["lines"][0]["unit_price"] == "12.50"
    # The answer was built from the order as sent to the database (stamped by the app, not
    # read back): it reads back the same, times included.
    assert read.json()["data"]["lines"] == order["lines"]
    stored = read.json()["data"]
    for field in ("created_at", "updated_at", "reservation_expires_at", "total", "version"):
        assert stored[field] == order[field], field
    # The stock's events (in lock order) and then the order's, from the one transaction.
    events = await conn.fetch(
        "SELECT type, aggregate_id FROM events.outbox"
        " WHERE type IN ('inventory.changed', 'order.created') ORDER BY seq"
    )
    assert [(e["type"], e["aggregate_id"]) for e in events] == [
        *(("inventory.changed", p) for p in sorted([mug["id"], pen["id"]], key=uuid.UUID)),
        ("order.created", order["id"]),
    ]


async def test_a_free_order_is_paid_at_once_and_never_expires(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    customer: TestUser,
    conn: asyncpg.Connection,
    db: SingleConnectionDatabase,
) -> None:
    sample = await create_product(client, admin, price="0.00", inventory_count=4)
    response = await place(client, customer, lines((sample, 2)))
    assert response.status_code == 201, response.text
    order = response.json()["data"]
    assert (order["status"], order["total"]) == ("paid", "0.00")
    assert order["reservation_expires_at"] is None
    assert await stock_of(conn, sample) == 2  # sold, not held
    await conn.execute("UPDATE orders.orders SET created_at = created_at - interval '1 day'")
    assert await expire_due_orders(db) == 0  # type: ignore[arg-type]
    kinds = await conn.fetch(
        "SELECT type FROM events.outbox WHERE aggregate_id = $1 ORDER BY seq", order["id"]
    )
    assert [k["type"] for k in kinds] == ["order.created", "order.paid"]
    pay = await client.post(
        f"{API}/orders/{order['id']}/payments",
        json={"payment_method": "pm_card_visa"},
        headers=keyed(customer.headers),
    )
    assert pay.status_code == 409, pay.text


async def test_an_order_is_all_or_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser, conn: asyncpg.Connection
) -> None:
    plenty = await create_product(client, admin, inventory_count=10)
    scarce = await create_product(client, admin, inventory_count=1)
    response = await place(client, customer, lines((plenty, 4), (scarce, 2)))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "OUT_OF_STOCK"
    assert (await stock_of(conn, plenty), await stock_of(conn, scarce)) == (10, 1)
    assert await conn.fetchval("SELECT count(*) FROM orders.orders") == 0


async def test_products_not_for_sale_and_mixed_currencies_are_refused(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser
) -> None:
    hidden = await create_product(client, admin, is_active=False)
    unknown = {"id": str(uuid.uuid4())}
    for product in (hidden, unknown):
        response = await place(client, customer, lines((product, 1)))
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "PRODUCT_UNAVAILABLE"
    euro = await create_product(client, admin, currency="EUR")
    dollar = await create_product(client, admin, currency="USD")
    mixed = await place(client, customer, lines((euro, 1), (dollar, 1)))
    assert mixed.json()["error"]["code"] == "ORDER_MIXED_CURRENCIES"


async def test_bad_order_bodies_are_refused(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser
) -> None:
    product = await create_product(client, admin)
    for body in (
        {"lines": []},
        {"lines": [{"product_id": product["id"], "quantity": 0}]},
        {"lines": [{"product_id": product["id"], "quantity": 1_001}]},
        {"lines": [{"product_id": "not-a-uuid", "quantity": 1}]},
        {"lines": [{"product_id": product["id"], "quantity": 1, "unit_price": "0.01"}]},
        {"lines": [{"product_id": product["id"], "quantity": 1}], "status": "paid"},
        {"lines": [{"product_id": product["id"], "quantity": 1}] * 51},
    ):
        response = await place(client, customer, body)
        assert response.status_code == 422, body
        assert response.json()["error"]["code"] == "VALIDATION_FAILED"


async def test_an_order_body_is_refused_as_on_every_other_route(
    client: httpx.AsyncClient, customer: TestUser
) -> None:
    """POST /orders parses its own body (a direct route): same statuses, codes and field
    names as the routes FastAPI resolves, and nothing is reserved or stored."""

    async def post(content: bytes) -> httpx.Response:
        headers = {**keyed(customer.headers), "content-type": "application/json"}
        return await client.post(f"{API}/orders", content=content, headers=headers)

    malformed = await post(b'{"lines": [')
    assert malformed.status_code == 400
    assert malformed.json()["error"]["code"] == "MALFORMED_JSON"

    empty = await post(b"")
    assert empty.status_code == 422
    assert empty.json()["error"]["details"] == [
        {"field": "body", "message": "Field required", "type": "missing"}
    ]

    bad_line = await post(b'{"lines": [{"product_id": "nope", "quantity": 0}]}')
    assert bad_line.status_code == 422
    fields = sorted(d["field"] for d in bad_line.json()["error"]["details"])
    assert fields == ["body.lines.0.product_id", "body.lines.0.quantity"]

    not_an_object = await post(b"[]")
    assert not_an_object.status_code == 422
    assert not_an_object.json()["error"]["details"][0]["field"] == "body"


async def test_idempotency_keys_replay_refuse_changes_and_are_required(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser, conn: asyncpg.Connection
) -> None:
    product = await create_product(client, admin, inventory_count=10)
    body = lines((product, 2))
    first = await place(client, customer, body, key="order-1")
    again = await place(client, customer, body, key="order-1")
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert await stock_of(conn, product) == 8  # reserved once

    changed = await place(client, customer, lines((product, 3)), key="order-1")
    assert changed.status_code == 422
    assert changed.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"

    # Keys are per caller: another customer's "order-1" is theirs.
    other = await client.post(f"{API}/orders", json=body, headers=keyed(admin, "order-1"))
    assert other.status_code == 201
    assert other.json()["data"]["id"] != first.json()["data"]["id"]

    for headers in (customer.headers, {**customer.headers, "Idempotency-Key": "has space"}):
        missing = await client.post(f"{API}/orders", json=body, headers=headers)
        assert missing.status_code == 400
        assert missing.json()["error"]["code"] == "IDEMPOTENCY_KEY_REQUIRED"

    # A refused request stores nothing: the same key may be used once the cause is fixed.
    scarce = await create_product(client, admin, inventory_count=0)
    refused = await place(client, customer, lines((scarce, 1)), key="order-2")
    assert refused.status_code == 409
    await conn.execute(
        "UPDATE catalog.products SET inventory_count = 1 WHERE id = $1", uuid.UUID(scarce["id"])
    )
    assert (await place(client, customer, lines((scarce, 1)), key="order-2")).status_code == 201


async def test_customers_see_only_their_own_orders(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    customer: TestUser,
    conn: asyncpg.Connection,
    runtime: IdentityRuntime,
) -> None:
    other = await make_user(conn, runtime)
    product = await create_product(client, admin, inventory_count=20)
    mine = [(await place(client, customer, lines((product, 1)))).json()["data"] for _ in range(3)]
    theirs = (await place(client, other, lines((product, 1)))).json()["data"]

    # BOLA: another customer's order is "not found", to read and to cancel.
    assert (await client.get(f"{API}/orders/{theirs['id']}", headers=customer.headers)).json()[
        "error"
    ]["code"] == "ORDER_NOT_FOUND"
    cancel = await client.post(
        f"{API}/orders/{theirs['id']}/cancel", json={}, headers=keyed(customer.headers)
    )
    assert cancel.status_code == 404

    page1 = (await client.get(f"{API}/orders?limit=2", headers=customer.headers)).json()
    cursor = page1["meta"]["next_cursor"]
    page2 = (
        await client.get(f"{API}/orders?limit=2&cursor={cursor}", headers=customer.headers)
    ).json()
    seen = [o["id"] for o in page1["data"] + page2["data"]]
    assert seen == [o["id"] for o in reversed(mine)]  # newest first, no one else's
    assert page2["meta"]["next_cursor"] is None
    forbidden = await client.get(f"{API}/orders?customer_id={other.id}", headers=customer.headers)
    assert forbidden.status_code == 403

    # Staff see everyone's, and can filter by customer and status.
    everyone = (await client.get(f"{API}/orders?limit=100", headers=admin)).json()["data"]
    assert {o["id"] for o in everyone} == {*seen, theirs["id"]}
    filtered = await client.get(
        f"{API}/orders?customer_id={other.id}&status=pending_payment", headers=admin
    )
    assert [o["id"] for o in filtered.json()["data"]] == [theirs["id"]]
    assert (await client.get(f"{API}/orders?status=bogus", headers=admin)).status_code == 422


async def test_cancelling_releases_stock_once(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser, conn: asyncpg.Connection
) -> None:
    product = await create_product(client, admin, inventory_count=5)
    order = (await place(client, customer, lines((product, 2)))).json()["data"]
    assert await stock_of(conn, product) == 3
    cancelled = await client.post(
        f"{API}/orders/{order['id']}/cancel",
        json={"reason": "changed my mind"},
        headers=keyed(customer.headers),
    )
    assert cancelled.status_code == 200
    assert cancelled.json()["data"]["status"] == "cancelled"
    assert cancelled.json()["data"]["reservation_expires_at"] is None
    assert await stock_of(conn, product) == 5
    again = await client.post(
        f"{API}/orders/{order['id']}/cancel", json={}, headers=keyed(customer.headers)
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "ORDER_INVALID_TRANSITION"
    assert await stock_of(conn, product) == 5


async def test_only_staff_fulfil_and_only_paid_orders(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser, conn: asyncpg.Connection
) -> None:
    product = await create_product(client, admin, inventory_count=5)
    order = (await place(client, customer, lines((product, 1)))).json()["data"]
    path = f"{API}/orders/{order['id']}/fulfil"
    assert (await client.post(path, headers=keyed(customer.headers))).status_code == 403
    early = await client.post(path, headers=keyed(admin))
    assert early.json()["error"]["code"] == "ORDER_INVALID_TRANSITION"
    await conn.execute(
        "UPDATE orders.orders SET status = 'paid', reservation_expires_at = NULL WHERE id = $1",
        uuid.UUID(order["id"]),
    )
    fulfilled = await client.post(path, headers=keyed(admin))
    assert fulfilled.json()["data"]["status"] == "fulfilled"
    assert await stock_of(conn, product) == 4  # sold, not released
    # A customer may not cancel once paid; staff may (the stock comes back).
    paid = (await place(client, customer, lines((product, 1)))).json()["data"]
    await conn.execute(
        "UPDATE orders.orders SET status = 'paid' WHERE id = $1", uuid.UUID(paid["id"])
    )
    cancel = f"{API}/orders/{paid['id']}/cancel"
    assert (await client.post(cancel, json={}, headers=keyed(customer.headers))).status_code == 403
    assert (await client.post(cancel, json={}, headers=keyed(admin))).status_code == 200
    assert await stock_of(conn, product) == 4


async def test_the_expiry_sweep_releases_stock_exactly_once(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    customer: TestUser,
    conn: asyncpg.Connection,
    db: SingleConnectionDatabase,
) -> None:
    product = await create_product(client, admin, inventory_count=5)
    late = (await place(client, customer, lines((product, 2)))).json()["data"]
    fresh = (await place(client, customer, lines((product, 1)))).json()["data"]
    await conn.execute(
        "UPDATE orders.orders SET reservation_expires_at = now() - interval '1 s' WHERE id = $1",
        uuid.UUID(late["id"]),
    )
    assert await expire_due_orders(db) == 1  # type: ignore[arg-type]
    assert await expire_due_orders(db) == 0  # type: ignore[arg-type]
    assert await stock_of(conn, product) == 4
    read = await client.get(f"{API}/orders/{late['id']}", headers=customer.headers)
    assert read.json()["data"]["status"] == "expired"
    kept = await client.get(f"{API}/orders/{fresh['id']}", headers=customer.headers)
    assert kept.json()["data"]["status"] == "pending_payment"
    # An expired order cannot be cancelled (its stock is already back).
    cancel = await client.post(
        f"{API}/orders/{late['id']}/cancel", json={}, headers=keyed(customer.headers)
    )
    assert cancel.status_code == 409
    assert await stock_of(conn, product) == 4
