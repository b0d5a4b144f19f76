"""The split deployment on real ports: the catalog served by one app, the order context by
another (`serve_context="orders"`), reserving stock over HTTP with a service API key.

Both run in this process under uvicorn, on one database (each context keeps to its own
schema). `open_split` takes each side's extra settings; `split` is the default pair.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from mercato.app import create_app
from mercato.core.database import Database
from tests.factories import TestUser, product_payload
from tests.payments.conftest import committed_users
from tests.realtime.conftest import free_port
from tests.settings import make_settings

API = "/api/v1"
RESERVATIONS = f"{API}/stock/reservations"


@asynccontextmanager
async def served(app: ASGIApp, port: int) -> AsyncIterator[str]:
    """`app` on `port` (uvicorn, in this process), with its lifespan; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def catalog_app(db_url: str, **settings: Any) -> Any:
    return create_app(make_settings(database_url=db_url, **settings))


async def service_key(catalog_url: str, admin: TestUser, scopes: list[str]) -> str:
    async with httpx.AsyncClient(base_url=catalog_url) as http:
        created = await http.post(
            f"{API}/api-keys",
            json={"name": "order-service", "scopes": scopes},
            headers=admin.headers,
        )
    assert created.status_code == 201, created.text
    key: str = created.json()["data"]["key"]
    return key


def orders_settings(db_url: str, catalog_url: str, key: str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "database_url": db_url,
        "serve_context": "orders",
        "catalog_url": catalog_url,
        "catalog_api_key": key,
        "catalog_connect_timeout_seconds": 0.5,
        "catalog_timeout_seconds": 10,
        "catalog_breaker_threshold": 3,
        "catalog_breaker_seconds": 1,
        "order_expiry_sweep_seconds": 0.2,
        **overrides,
    }
    return make_settings(**values)


@dataclass
class Split:
    db: Database
    catalog: httpx.AsyncClient  # the catalog's service, as its administrator sees it
    orders: httpx.AsyncClient  # the order service
    key: str  # the order service's API key (stock:reserve)
    admin: TestUser
    customers: list[TestUser] = field(default_factory=list)

    async def product(self, stock: int) -> str:
        created = await self.catalog.post(
            f"{API}/products",
            json=product_payload(inventory_count=stock),
            headers=self.admin.headers,
        )
        assert created.status_code == 201, created.text
        product_id: str = created.json()["data"]["id"]
        return product_id

    async def stock(self, product_id: str) -> int:
        count: int = await self.db.reader.fetchval(
            "SELECT inventory_count FROM catalog.products WHERE id = $1", uuid.UUID(product_id)
        )
        return count

    async def place(
        self, product_id: str, quantity: int = 1, *, user: TestUser | None = None, key: str = ""
    ) -> httpx.Response:
        return await self.orders.post(
            f"{API}/orders",
            json={"lines": [{"product_id": product_id, "quantity": quantity}]},
            headers={
                **(user or self.customers[0]).headers,
                "Idempotency-Key": key or uuid.uuid4().hex,
            },
        )

    async def reservation(self, order_id: str) -> Any:
        return await self.db.reader.fetchrow(
            "SELECT status, lines FROM catalog.stock_reservations WHERE id = $1",
            uuid.UUID(order_id),
        )

    async def reservation_statuses(self) -> dict[str, int]:
        rows = await self.db.reader.fetch(
            "SELECT status, count(*) AS n FROM catalog.stock_reservations GROUP BY status"
        )
        return {row["status"]: row["n"] for row in rows}

    async def order_count(self) -> int:
        count: int = await self.db.reader.fetchval("SELECT count(*) FROM orders.orders")
        return count

    def stock_call(self, path: str) -> Any:
        """A call to the catalog's reservation routes with the order service's key."""
        return self.catalog.post(f"{RESERVATIONS}/{path}", headers=self.bearer)

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@asynccontextmanager
async def open_split(
    db_url: str,
    *,
    catalog: dict[str, Any] | None = None,
    orders: dict[str, Any] | None = None,
    catalog_wrapper: Any = None,
    customers: int = 2,
) -> AsyncIterator[Split]:
    """The catalog (optionally behind `catalog_wrapper(app)`) and the order service."""
    admin, *people = await committed_users(db_url, "admin", *["customer"] * customers)
    async with AsyncExitStack() as stack:
        app = catalog_app(db_url, **(catalog or {}))
        if catalog_wrapper is not None:
            app = catalog_wrapper(app)
        catalog_url = await stack.enter_async_context(served(app, free_port()))
        key = await service_key(catalog_url, admin, ["stock:reserve"])
        orders_app = create_app(orders_settings(db_url, catalog_url, key, **(orders or {})))
        orders_url = await stack.enter_async_context(served(orders_app, free_port()))
        db = await Database.connect(db_url, min_size=1, max_size=2)
        stack.push_async_callback(db.close)
        catalog_http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=catalog_url, timeout=30)
        )
        orders_http = await stack.enter_async_context(
            httpx.AsyncClient(base_url=orders_url, timeout=60)
        )
        yield Split(db, catalog_http, orders_http, key, admin, people)


@pytest.fixture
async def split(fresh_db_url: str) -> AsyncIterator[Split]:
    async with open_split(fresh_db_url) as pair:
        yield pair
