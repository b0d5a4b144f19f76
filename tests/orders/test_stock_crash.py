"""A crash of the order service between reserving stock and confirming it: the order
service runs as `mercato serve --context orders`, a process of its own, killed with SIGKILL
while the catalog has not heard the confirmation. The catalog's sweep takes the stock back;
the restarted order service learns the reservation lapsed and cancels the order."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from mercato.core.database import Database
from tests.factories import product_payload
from tests.orders.conftest import API, catalog_app, served, service_key
from tests.payments.conftest import committed_users, eventually
from tests.realtime.conftest import free_port
from tests.settings import make_settings

pytestmark = pytest.mark.slow


class SilentConfirmations:
    """The catalog, except that confirmations never reach it: each waits until its caller
    is gone, then is answered 503 without being applied."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.arrived = asyncio.Event()
        self.let_go = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"].endswith("/confirm")
            and not self.let_go.is_set()
        ):
            self.arrived.set()
            await self.let_go.wait()
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send)


def _orders_env(database_url: str, catalog_url: str, key: str, data_dir: Path) -> dict[str, str]:
    settings = make_settings()
    secrets = ("secret_key", "data_keys", "blind_index_key", "payment_webhook_secret")
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith("MERCATO_") and k != "DATABASE_URL"
    }
    return {
        **inherited,
        "DATABASE_URL": database_url,
        "MERCATO_ENVIRONMENT": "test",
        "MERCATO_DATA_DIR": str(data_dir),
        "MERCATO_ACCESS_LOG": "false",
        "MERCATO_RATE_LIMIT_AUTHENTICATED": "100000/minute",
        "MERCATO_CATALOG_URL": catalog_url,
        "MERCATO_CATALOG_API_KEY": key,
        "MERCATO_CATALOG_TIMEOUT_SECONDS": "30",
        **{f"MERCATO_{n.upper()}": getattr(settings, n).get_secret_value() for n in secrets},
    }


@asynccontextmanager
async def order_service(
    env: dict[str, str], port: int, log: Path
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """`mercato serve --context orders` as a process of its own, ready."""
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "mercato", "serve", "--context", "orders", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            async with httpx.AsyncClient() as http:
                await eventually(
                    lambda: _ready(http, f"http://127.0.0.1:{port}/health/ready", process),
                    bool,
                    timeout=30,
                )
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                await asyncio.to_thread(process.wait, 30)


async def _ready(http: httpx.AsyncClient, url: str, process: subprocess.Popen[bytes]) -> bool:
    assert process.poll() is None, "the order service exited early"
    try:
        return (await http.get(url, timeout=1)).status_code == 200
    except httpx.HTTPError:
        return False


async def test_a_crash_between_reserve_and_confirm_ends_consistent_after_the_sweep(
    fresh_db_url: str, tmp_path: Path
) -> None:
    admin, customer = await committed_users(fresh_db_url, "admin", "customer")
    catalog = SilentConfirmations(
        catalog_app(
            fresh_db_url, stock_reservation_minutes=0.02, stock_reservation_sweep_seconds=0.1
        )
    )
    port = free_port()
    log = tmp_path / "orders.log"
    db = await Database.connect(fresh_db_url, min_size=1, max_size=2)
    try:
        async with (
            served(catalog, free_port()) as catalog_url,
            httpx.AsyncClient(base_url=catalog_url, timeout=10) as http,
        ):
            key = await service_key(catalog_url, admin, ["stock:reserve"])
            created = await http.post(
                f"{API}/products", json=product_payload(inventory_count=10), headers=admin.headers
            )
            item = created.json()["data"]["id"]
            env = _orders_env(fresh_db_url, catalog_url, key, tmp_path)

            async with (
                order_service(env, port, log) as first,
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as orders,
            ):
                placing = asyncio.create_task(
                    orders.post(
                        f"{API}/orders",
                        json={"lines": [{"product_id": item, "quantity": 4}]},
                        headers={**customer.headers, "Idempotency-Key": "crash-1"},
                    )
                )
                await asyncio.wait_for(catalog.arrived.wait(), 30)  # reserved, committed
                first.send_signal(signal.SIGKILL)
                await asyncio.to_thread(first.wait, 10)
                with pytest.raises(httpx.HTTPError):
                    await placing
            assert first.returncode == -signal.SIGKILL
            catalog.let_go.set()

            order = await db.reader.fetchrow("SELECT id, status FROM orders.orders")
            assert order["status"] == "pending_payment"
            owed = "SELECT state FROM orders.stock_reservations WHERE order_id = $1"
            assert await db.reader.fetchval(owed, order["id"]) == "confirming"

            # Nobody confirmed: the catalog's sweep takes the stock back at the deadline.
            stock = "SELECT inventory_count FROM catalog.products WHERE id = $1::uuid"
            await eventually(lambda: db.reader.fetchval(stock, item), lambda n: n == 10)

            # The restarted service confirms, learns the reservation lapsed, and cancels.
            async with order_service(env, port, log):
                status = "SELECT status FROM orders.orders WHERE id = $1"
                await eventually(
                    lambda: db.reader.fetchval(status, order["id"]),
                    lambda s: s == "cancelled",
                    timeout=30,
                )
                await eventually(
                    lambda: db.reader.fetchval(owed, order["id"]), lambda s: s == "released"
                )
            assert await db.reader.fetchval(stock, item) == 10
            reason = "SELECT cancel_reason FROM orders.orders WHERE id = $1"
            assert await db.reader.fetchval(reason, order["id"]) == "stock reservation lapsed"
    except BaseException:
        print(log.read_text() if log.exists() else "(no order service log)")
        raise
    finally:
        await db.close()
