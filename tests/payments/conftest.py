"""End-to-end payments: the Stripe sandbox and Mercato, each on a real port, wired together.

`shop` starts the sandbox (settling delayed payments after SETTLE seconds), then Mercato
pointed at it (breaker: 3 failures, 1 s open), registers Mercato's webhook with the sandbox,
and commits an administrator and two customers. Its helpers speak HTTP to both servers;
only the checks of the event tables and `reconcile` go to the database directly.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from mercato.core.database import Database
from mercato.payments.service import reconcile
from mercato.payments.stripe import StripeProvider
from mercato.sandbox import create_sandbox_app, sandbox_state
from mercato.sandbox.state import SandboxState
from tests.factories import TestUser, identity_runtime, make_user, product_payload
from tests.realtime.conftest import serving
from tests.sandbox.conftest import serving as serving_asgi
from tests.settings import make_settings

API = "/api/v1"
SETTLE = 0.3
BREAKER_THRESHOLD = 3
BREAKER_SECONDS = 1.0
WEBHOOK_SECRET = make_settings().payment_webhook_secret.get_secret_value()  # type: ignore[union-attr]
T = TypeVar("T")


def key() -> dict[str, str]:
    return {"Idempotency-Key": uuid.uuid4().hex}


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], *, timeout: float = 5.0
) -> T:
    """Call `probe` until `accept` holds for its value; fail with the last value otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {timeout}s")
        await asyncio.sleep(0.05)


class CountingApp:
    """The sandbox app, counting the provider API (/v1) requests that reach it; while
    `gate` is set, those requests wait for it (a provider that is slow to answer)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls: list[tuple[str, str | None]] = []  # ("POST /v1/...", idempotency key)
        self.gate: asyncio.Event | None = None
        self.arrived = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            key = dict(scope["headers"]).get(b"idempotency-key")
            call = f"{scope['method']} {scope['path']}"
            self.calls.append((call, key.decode() if key is not None else None))
            if self.gate is not None:
                self.arrived.set()
                await self.gate.wait()
        await self.app(scope, receive, send)

    def hold(self) -> asyncio.Event:
        """Hold provider calls until the returned event is set."""
        self.gate, self.arrived = asyncio.Event(), asyncio.Event()
        return self.gate


@dataclass
class Sandbox:
    url: str
    http: httpx.AsyncClient
    counting: CountingApp

    @property
    def state(self) -> SandboxState:
        return sandbox_state(self.counting.app)

    async def charges(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self.http.get("/_sandbox/charges")).json()
        return found

    async def events(self, intent_id: str | None = None) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = (await self.http.get("/_sandbox/events")).json()
        return [
            e
            for e in events
            if intent_id is None
            or intent_id in (e["data"]["object"]["id"], e["data"]["object"].get("payment_intent"))
        ]

    async def event(self, intent_id: str, type_: str) -> dict[str, Any]:
        return next(e for e in await self.events(intent_id) if e["type"] == type_)

    async def deliveries(self, event_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = (await self.http.get("/_sandbox/deliveries")).json()
        return [d for d in found if d["event"] == event_id]

    async def settled_deliveries(self, event_id: str, count: int = 1) -> list[dict[str, Any]]:
        """Wait until `count` deliveries of the event are done (delivered or failed)."""
        return await eventually(
            lambda: self.deliveries(event_id),
            lambda ds: len(ds) >= count and all(d["status"] != "pending" for d in ds),
        )

    async def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.http.post(f"/_sandbox/{path}", json=body)
        assert response.is_success, response.text
        return response.json()


@dataclass
class Shop:
    db_url: str
    http: httpx.AsyncClient
    sandbox: Sandbox
    db: Database
    admin: TestUser
    customers: list[TestUser] = field(default_factory=list)

    @property
    def alice(self) -> TestUser:
        return self.customers[0]

    async def product(self, *, stock: int = 5, price: str = "10.00") -> str:
        body = product_payload(inventory_count=stock, price=price)
        response = await self.http.post(f"{API}/products", json=body, headers=self.admin.headers)
        assert response.status_code == 201, response.text
        product_id: str = response.json()["data"]["id"]
        return product_id

    async def stock(self, product_id: str) -> int:
        response = await self.http.get(f"{API}/products/{product_id}")
        assert response.status_code == 200, response.text
        count: int = response.json()["data"]["inventory_count"]
        return count

    async def place(self, product_id: str, quantity: int = 2, user: TestUser | None = None) -> str:
        response = await self.http.post(
            f"{API}/orders",
            json={"lines": [{"product_id": product_id, "quantity": quantity}]},
            headers={**(user or self.alice).headers, **key()},
        )
        assert response.status_code == 201, response.text
        order_id: str = response.json()["data"]["id"]
        return order_id

    async def pay(
        self,
        order_id: str,
        method: str = "pm_card_visa",
        *,
        idempotency_key: str | None = None,
        user: TestUser | None = None,
    ) -> httpx.Response:
        headers = {
            **(user or self.alice).headers,
            "Idempotency-Key": idempotency_key or uuid.uuid4().hex,
        }
        return await self.http.post(
            f"{API}/orders/{order_id}/payments", json={"payment_method": method}, headers=headers
        )

    async def order(self, order_id: str) -> dict[str, Any]:
        response = await self.http.get(f"{API}/orders/{order_id}", headers=self.admin.headers)
        assert response.status_code == 200, response.text
        order: dict[str, Any] = response.json()["data"]
        return order

    async def status(self, order_id: str) -> str:
        status: str = (await self.order(order_id))["status"]
        return status

    async def becomes(self, order_id: str, status: str, timeout: float = 5.0) -> None:
        await eventually(lambda: self.status(order_id), lambda s: s == status, timeout=timeout)

    async def payments(self, order_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(
            f"{API}/orders/{order_id}/payments", headers=self.alice.headers
        )
        assert response.status_code == 200, response.text
        payments: list[dict[str, Any]] = response.json()["data"]
        return payments

    async def refund(
        self, order_id: str, body: dict[str, Any], *, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return await self.http.post(
            f"{API}/orders/{order_id}/refunds",
            json=body,
            headers={**(headers or self.admin.headers), **key()},
        )

    async def order_events(self, order_id: str, type_: str = "order.paid") -> int:
        """Rows of `type_` for the order, in the outbox and the log together."""
        count: int = await self.db.reader.fetchval(
            "SELECT (SELECT count(*) FROM events.outbox WHERE type = $1 AND aggregate_id = $2)"
            " + (SELECT count(*) FROM events.event_log WHERE type = $1 AND aggregate_id = $2)",
            type_,
            order_id,
        )
        return count

    async def lock_waiters(self, count: int) -> None:
        """Wait until `count` transactions of this database are waiting for a lock."""
        await eventually(
            lambda: self.db.reader.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ),
            lambda waiting: waiting >= count,
        )

    async def charges_of(self, order_id: str) -> list[dict[str, Any]]:
        intents = {p["intent_id"] for p in await self.payments(order_id) if p["intent_id"]}
        return [c for c in await self.sandbox.charges() if c["payment_intent"] in intents]

    async def reconcile(self) -> int:
        return await reconcile_against(self.db_url, self.sandbox.url)


async def reconcile_against(db_url: str, sandbox_url: str) -> int:
    """One reconciliation pass, from outside the app, over everything unsettled."""
    db = await Database.connect(db_url, min_size=1, max_size=2)
    provider = StripeProvider(
        base_url=sandbox_url,
        api_key="sk_test_sandbox",
        timeout=5,
        breaker_threshold=5,
        breaker_seconds=1,
    )
    try:
        return await reconcile(db, provider, older_than=timedelta(0))
    finally:
        await provider.close()
        await db.close()


async def committed_users(db_url: str, *roles: str) -> list[TestUser]:
    async with identity_runtime(db_url) as runtime, runtime.db.transaction() as conn:
        return [await make_user(conn, runtime, roles=(role,)) for role in roles]


@asynccontextmanager
async def running_sandbox(*, backoff: float | None = None) -> AsyncIterator[Sandbox]:
    """The sandbox on a real port (webhook endpoints are added by the caller)."""
    counting = CountingApp(create_sandbox_app(settle_delay=SETTLE))
    if backoff is not None:
        sandbox_state(counting.app).webhooks.backoff = backoff
    async with serving_asgi(counting) as url, httpx.AsyncClient(base_url=url) as http:  # type: ignore[arg-type]
        yield Sandbox(url, http, counting)


@pytest.fixture
async def shop(fresh_db_url: str) -> AsyncIterator[Shop]:
    admin, *customers = await committed_users(fresh_db_url, "admin", "customer", "customer")
    async with (
        running_sandbox() as sandbox,
        serving(
            fresh_db_url,
            payment_api_base=sandbox.url,
            payment_timeout_seconds=5,
            payment_breaker_threshold=BREAKER_THRESHOLD,
            payment_breaker_seconds=BREAKER_SECONDS,
        ) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=10) as http,
    ):
        hook = {"url": f"http://{address}{API}/payments/webhook", "secret": WEBHOOK_SECRET}
        await sandbox.control("endpoints", hook)
        db = await Database.connect(fresh_db_url, min_size=1, max_size=2)
        try:
            yield Shop(fresh_db_url, http, sandbox, db, admin, customers)
        finally:
            await db.close()
