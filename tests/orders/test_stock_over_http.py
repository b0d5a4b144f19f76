"""The order service reserving stock through the catalog over HTTP (the split deployment):
no oversell under concurrency, lost answers retried once, an outage answered with 503 and
nothing left behind, releases on cancel and expiry, the catalog's sweep as the backstop."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mercato.app import create_app
from mercato.catalog import StockLine
from mercato.core.database import Database, WriteBatch
from mercato.orders.catalog_client import CatalogStockClient
from mercato.orders.stock import RemoteStock
from tests.orders.conftest import (
    API,
    Split,
    catalog_app,
    committed_users,
    open_split,
    orders_settings,
    served,
    service_key,
)
from tests.payments.conftest import eventually
from tests.realtime.conftest import free_port

pytestmark = pytest.mark.slow


async def test_two_hundred_orders_over_http_sell_exactly_fifty_and_expiry_leaks_nothing(
    split: Split,
) -> None:
    item = await split.product(stock=50)
    answers = await asyncio.gather(
        *(split.place(item, user=split.customers[n % 2]) for n in range(200))
    )
    codes = Counter(a.status_code for a in answers)
    assert codes == {201: 50, 409: 150}, (codes, [a.text for a in answers if a.status_code >= 500])
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 409} == {"OUT_OF_STOCK"}
    assert await split.stock(item) == 0
    assert await split.reservation_statuses() == {"confirmed": 50}

    # Every order runs out unpaid: the order service expires them and releases each
    # reservation through the port; every unit comes back, once.
    await split.db.reader.execute(
        "UPDATE orders.orders SET reservation_expires_at = now() - interval '1 s'"
    )
    await eventually(split.reservation_statuses, lambda s: s == {"released": 50}, timeout=30)
    assert await split.stock(item) == 50
    owed = await split.db.reader.fetch("SELECT DISTINCT state FROM orders.stock_reservations")
    assert [row["state"] for row in owed] == ["released"]


class LosingFirstAnswer:
    """The catalog, whose first reservation answer is held back until `deliver` is set:
    the reservation is made, but the caller times out before it hears of it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.reserves: list[str] = []
        self.deliver = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        reserving = scope["type"] == "http" and scope["method"] == "PUT"
        if not reserving:
            await self.app(scope, receive, send)
            return
        self.reserves.append(scope["path"])
        if len(self.reserves) > 1:
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        await self.deliver.wait()
        for message in held:
            await send(message)


async def test_a_reserve_whose_answer_was_lost_is_retried_and_reserves_once(
    fresh_db_url: str,
) -> None:
    lossy: list[LosingFirstAnswer] = []

    def wrap(app: ASGIApp) -> ASGIApp:
        lossy.append(LosingFirstAnswer(app))
        return lossy[0]

    async with open_split(
        fresh_db_url, catalog_wrapper=wrap, orders={"catalog_timeout_seconds": 1}
    ) as split:
        item = await split.product(stock=5)
        placed = await split.place(item, quantity=2)
        lossy[0].deliver.set()
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["data"]["id"]
        assert lossy[0].reserves == [f"{API}/stock/reservations/{order_id}"] * 2
        assert await split.stock(item) == 3
        assert (await split.reservation(order_id))["status"] == "confirmed"
        assert await split.reservation_statuses() == {"confirmed": 1}


async def test_a_replayed_order_request_asks_the_catalog_for_nothing(split: Split) -> None:
    item = await split.product(stock=1)
    first = await split.place(item, key="checkout-7")
    again = await split.place(item, key="checkout-7")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    assert await split.reservation_statuses() == {"confirmed": 1}


async def test_a_reservation_whose_order_did_not_commit_is_released_not_confirmed(
    split: Split,
) -> None:
    """The order's writes go with its stored answer, in one statement at the end of its
    transaction; when that transaction rolls back and the request is still answered (another
    request's answer, committed meanwhile, is replayed), the hold must not confirm."""
    item = await split.product(stock=3)
    client = CatalogStockClient(
        base_url=str(split.catalog.base_url),
        api_key=split.key,
        connect_timeout=1,
        timeout=10,
        breaker_threshold=3,
        breaker_seconds=1,
    )
    stock = RemoteStock(client, split.db)
    order_id = uuid.uuid4()
    try:
        async with stock.hold(order_id, [StockLine(uuid.UUID(item), 2)]) as hold:
            writes = WriteBatch()
            hold.record(writes)  # queued with the order's writes, which are never sent
        assert (await split.reservation(str(order_id)))["status"] == "released"
        assert await split.stock(item) == 3
    finally:
        await stock.close()


@asynccontextmanager
async def catalog_on(db_url: str, port: int) -> AsyncIterator[str]:
    async with served(catalog_app(db_url), port) as url:
        yield url


async def test_while_the_catalog_is_down_orders_get_503_and_nothing_is_left_behind(
    fresh_db_url: str,
) -> None:
    admin, customer = await committed_users(fresh_db_url, "admin", "customer")
    port = free_port()
    async with catalog_on(fresh_db_url, port) as catalog_url:
        key = await service_key(catalog_url, admin, ["stock:reserve"])
    settings = orders_settings(fresh_db_url, catalog_url, key)
    async with (
        served(create_app(settings), free_port()) as orders_url,
        httpx.AsyncClient(base_url=orders_url, timeout=30) as orders,
        httpx.AsyncClient(base_url=catalog_url, timeout=30) as catalog,
    ):
        db = await Database.connect(fresh_db_url, min_size=1, max_size=2)
        split = Split(db, catalog, orders, key, admin, [customer])
        try:
            async with catalog_on(fresh_db_url, port):
                item = await split.product(stock=5)
                assert (await split.place(item)).status_code == 201

            # The catalog is gone: each try fails (the reserve, then the release that covers
            # a lost answer), the breaker opens, and later requests fail at once.
            down = [await split.place(item, key=f"down-{n}") for n in range(4)]
            assert [a.status_code for a in down] == [503] * 4
            assert {a.json()["error"]["code"] for a in down} == {"STOCK_SERVICE_UNAVAILABLE"}
            assert "paused" in down[-1].json()["error"]["message"]
            assert await split.order_count() == 1
            assert await split.stock(item) == 4

            async with catalog_on(fresh_db_url, port):
                # Back: once the breaker lets a trial call through, the same request succeeds.
                retried = await eventually(
                    lambda: split.place(item, key="down-3"), lambda r: r.status_code == 201
                )
                assert retried.json()["data"]["item_count"] == 1
                assert await split.order_count() == 2
                assert await split.stock(item) == 3
                assert await split.reservation_statuses() == {"confirmed": 2}
        finally:
            await db.close()


async def test_cancelling_releases_the_stock_through_the_port_and_release_is_idempotent(
    split: Split,
) -> None:
    item = await split.product(stock=5)
    order_id = (await split.place(item, quantity=3)).json()["data"]["id"]
    assert await split.stock(item) == 2
    cancelled = await split.orders.post(
        f"{API}/orders/{order_id}/cancel",
        json={},
        headers={**split.customers[0].headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert cancelled.status_code == 200, cancelled.text
    await eventually(lambda: split.stock(item), lambda n: n == 5)
    assert (await split.reservation(order_id))["status"] == "released"

    for _ in range(2):  # released again by the service: nothing changes
        again = await split.stock_call(f"{order_id}/release")
        assert again.status_code == 200, again.text
        assert again.json()["data"]["status"] == "released"
    assert await split.stock(item) == 5
    lapsed = await split.stock_call(f"{order_id}/confirm")
    assert lapsed.json()["error"]["code"] == "STOCK_RESERVATION_RELEASED"


async def test_an_unconfirmed_reservation_is_released_by_the_sweep_after_its_deadline(
    fresh_db_url: str,
) -> None:
    catalog = {"stock_reservation_minutes": 0.01, "stock_reservation_sweep_seconds": 0.1}
    async with open_split(fresh_db_url, catalog=catalog) as split:
        item = await split.product(stock=4)
        reservation = uuid.uuid4()
        reserved = await split.catalog.put(
            f"{API}/stock/reservations/{reservation}",
            json={"lines": [{"product_id": item, "quantity": 3}]},
            headers=split.bearer,
        )
        assert reserved.status_code == 200, reserved.text
        assert reserved.json()["data"]["status"] == "reserved"
        assert await split.stock(item) == 1
        # Its caller never confirms (it crashed before recording its order).
        await eventually(lambda: split.stock(item), lambda n: n == 4)
        assert (await split.reservation(str(reservation)))["status"] == "released"


async def test_the_reservation_routes_need_the_service_permission(split: Split) -> None:
    path = f"{API}/stock/reservations/{uuid.uuid4()}"
    body = {"lines": [{"product_id": str(uuid.uuid4()), "quantity": 1}]}
    anonymous = await split.catalog.put(path, json=body)
    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "UNAUTHENTICATED")
    weak_key = await service_key(str(split.catalog.base_url), split.admin, ["products:write"])
    for headers in ({"Authorization": f"Bearer {weak_key}"}, split.customers[0].headers):
        refused = await split.catalog.put(path, json=body, headers=headers)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "FORBIDDEN")
        released = await split.catalog.post(f"{path}/release", headers=headers)
        assert released.status_code == 403
