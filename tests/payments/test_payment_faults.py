"""Payments when things go wrong: lost webhooks, provider outages, compensation, a crash.

Mercato and the Stripe sandbox run on real ports (see conftest.py); the crash test runs
Mercato as a `mercato serve` process of its own and kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from mercato.core.database import Database
from tests.payments.conftest import (
    API,
    BREAKER_SECONDS,
    BREAKER_THRESHOLD,
    SETTLE,
    Shop,
    committed_users,
    eventually,
    key,
    running_sandbox,
)
from tests.realtime.conftest import free_port
from tests.settings import make_settings

pytestmark = pytest.mark.slow


async def test_a_lost_webhook_is_made_up_for_by_reconciliation(shop: Shop) -> None:
    product = await shop.product(stock=5)
    order_id = await shop.place(product, quantity=2)
    await shop.sandbox.control("webhooks", {"paused": True})

    processing = await shop.pay(order_id, "pm_card_delayed")
    assert processing.status_code == 202, processing.text
    intent_id = processing.json()["data"]["intent_id"]
    succeeded = await eventually(
        lambda: shop.sandbox.events(intent_id),
        lambda events: "payment_intent.succeeded" in {e["type"] for e in events},
        timeout=SETTLE + 5,
    )
    assert [e for e in succeeded if e["type"] == "payment_intent.succeeded"]
    assert await shop.sandbox.charges() != []  # the provider has the money...
    assert await shop.status(order_id) == "pending_payment"  # ...and Mercato does not know
    assert [p["status"] for p in await shop.payments(order_id)] == ["processing"]

    assert await shop.reconcile() == 1
    assert await shop.status(order_id) == "paid"
    assert [p["status"] for p in await shop.payments(order_id)] == ["succeeded"]
    assert len(await shop.sandbox.charges()) == 1
    assert await shop.order_events(order_id) == 1
    assert await shop.stock(product) == 3


async def test_an_outage_opens_the_breaker_and_the_same_key_pays_after_it(shop: Shop) -> None:
    product = await shop.product(stock=5)
    order_id = await shop.place(product, quantity=2)
    same = uuid.uuid4().hex
    calls = shop.sandbox.counting.calls
    await shop.sandbox.control("outage", {"down": True})

    for _ in range(BREAKER_THRESHOLD):
        down = await shop.pay(order_id, idempotency_key=same)
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "PAYMENT_PROVIDER_UNAVAILABLE"
        assert "idempotent-replayed" not in down.headers
        assert await shop.status(order_id) == "pending_payment"
        assert await shop.stock(product) == 3  # still reserved
    assert len(calls) == 3 * BREAKER_THRESHOLD  # each call tried 3 times...
    assert len({k for _, k in calls}) == 1  # ...under the attempt's one provider key

    started = time.monotonic()
    fast = await shop.pay(order_id, idempotency_key=same)
    assert fast.status_code == 503, fast.text
    assert time.monotonic() - started < 0.5
    assert len(calls) == 3 * BREAKER_THRESHOLD  # the open breaker called no one

    await shop.sandbox.control("outage", {"down": False})
    paid = await eventually(
        lambda: shop.pay(order_id, idempotency_key=same),
        lambda answer: answer.status_code != 503,
        timeout=BREAKER_SECONDS + 3,
    )
    assert paid.status_code == 201, paid.text
    assert len({k for _, k in calls}) == 1
    assert len(await shop.payments(order_id)) == 1
    assert len(await shop.sandbox.charges()) == 1
    assert await shop.status(order_id) == "paid"
    assert await shop.order_events(order_id) == 1
    assert await shop.stock(product) == 3
    replayed = await shop.pay(order_id, idempotency_key=same)
    assert (replayed.status_code, replayed.headers["idempotent-replayed"]) == (201, "true")


async def test_cancelling_a_paid_order_refunds_it(shop: Shop) -> None:
    product = await shop.product(stock=5)
    order_id = await shop.place(product, quantity=2)
    assert (await shop.pay(order_id)).status_code == 201
    assert await shop.stock(product) == 3

    cancelled = await shop.http.post(
        f"{API}/orders/{order_id}/cancel", json={}, headers={**shop.admin.headers, **key()}
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["data"]["status"] == "cancelled"
    assert await shop.stock(product) == 5
    # The compensation consumer, reading `order.cancelled`, marks the money for refund...
    await eventually(
        lambda: shop.payments(order_id), lambda ps: ps[0]["status"] == "refund_pending"
    )
    # ...and reconciliation gives it back.
    assert await shop.reconcile() == 1
    (payment,) = await shop.payments(order_id)
    assert (payment["status"], payment["refunded_amount"]) == ("refunded", 2000)
    (charge,) = await shop.sandbox.charges()
    assert (charge["payment_intent"], charge["amount_refunded"]) == (payment["intent_id"], 2000)
    assert [e["type"] for e in await shop.sandbox.events(payment["intent_id"])].count(
        "refund.created"
    ) == 1
    assert await shop.reconcile() == 0
    assert await shop.status(order_id) == "cancelled"
    assert await shop.order_events(order_id) == 1


# --- known bugs -------------------------------------------------------------------------


async def test_requests_the_provider_refuses_do_not_open_the_breaker(shop: Shop) -> None:
    product = await shop.product(stock=10)
    for _ in range(BREAKER_THRESHOLD):
        refused = await shop.pay(await shop.place(product, quantity=1), "pm_card_bogus")
        assert refused.json()["error"]["code"] == "PAYMENT_PROVIDER_REFUSED"
    order_id = await shop.place(product, quantity=1, user=shop.customers[1])
    paid = await shop.pay(order_id, "pm_card_visa", user=shop.customers[1])
    assert paid.status_code == 201, paid.text


async def test_after_a_refused_card_another_card_can_pay(shop: Shop) -> None:
    product = await shop.product(stock=5)
    order_id = await shop.place(product, quantity=2)
    refused = await shop.pay(order_id, "pm_card_bogus")
    assert refused.status_code == 502, refused.text
    paid = await shop.pay(order_id, "pm_card_visa")
    assert paid.status_code == 201, paid.text
    assert paid.json()["data"]["payment_method"] == "pm_card_visa"


async def test_one_refused_refund_does_not_stop_reconciliation(shop: Shop) -> None:
    product = await shop.product(stock=5)
    refunded_elsewhere = await shop.place(product, quantity=1)
    intent_id = (await shop.pay(refunded_elsewhere)).json()["data"]["intent_id"]
    dashboard = await shop.sandbox.http.post(
        "/v1/refunds",
        data={"payment_intent": intent_id},
        headers={"Authorization": "Bearer sk_test_sandbox"},
    )
    assert dashboard.status_code == 200, dashboard.text
    cancelled = await shop.http.post(
        f"{API}/orders/{refunded_elsewhere}/cancel",
        json={},
        headers={**shop.admin.headers, **key()},
    )
    assert cancelled.status_code == 200, cancelled.text
    await eventually(
        lambda: shop.payments(refunded_elsewhere), lambda ps: ps[0]["status"] == "refund_pending"
    )
    await shop.sandbox.control("webhooks", {"paused": True})
    lost = await shop.place(product, quantity=1)
    lost_intent = (await shop.pay(lost, "pm_card_delayed")).json()["data"]["intent_id"]
    await eventually(
        lambda: shop.sandbox.events(lost_intent),
        lambda events: "payment_intent.succeeded" in {e["type"] for e in events},
    )

    await shop.reconcile()
    assert await shop.status(lost) == "paid"


# --- a crash ----------------------------------------------------------------------------


def _server_env(database_url: str, sandbox_url: str, data_dir: Path) -> dict[str, str]:
    settings = make_settings()
    secrets = ("secret_key", "data_keys", "blind_index_key", "payment_webhook_secret")
    return {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith("MERCATO_") and k != "DATABASE_URL"
        },
        "DATABASE_URL": database_url,
        "MERCATO_ENVIRONMENT": "test",
        "MERCATO_DATA_DIR": str(data_dir),
        "MERCATO_ACCESS_LOG": "false",
        "MERCATO_RATE_LIMIT_ANONYMOUS": "100000/minute",
        "MERCATO_RATE_LIMIT_AUTHENTICATED": "100000/minute",
        "MERCATO_PAYMENT_API_BASE": sandbox_url,
        "MERCATO_PAYMENT_RECONCILE_AFTER_SECONDS": "1",
        # 6 s, not 3: the order paid before the crash must still be reserved when the
        # restarted server reconciles it (the sweep expires orders whose payment is in
        # flight; their money would then be refunded instead).
        "MERCATO_ORDER_RESERVATION_MINUTES": "0.1",
        "MERCATO_ORDER_EXPIRY_SWEEP_SECONDS": "0.5",
        **{f"MERCATO_{n.upper()}": getattr(settings, n).get_secret_value() for n in secrets},
    }


@asynccontextmanager
async def mercato_serve(
    env: dict[str, str], port: int, log: Path
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """`mercato serve` as a process of its own, ready; stopped with SIGTERM if still alive."""
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "mercato", "serve", "--port", str(port)],
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
    assert process.poll() is None, "the server exited early"
    try:
        return (await http.get(url, timeout=1)).status_code == 200
    except httpx.HTTPError:
        return False


async def test_a_crash_while_a_payment_settles_is_recovered_after_restart(
    fresh_db_url: str, tmp_path: Path
) -> None:
    admin, customer = await committed_users(fresh_db_url, "admin", "customer")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "mercato.log"
    db = await Database.connect(fresh_db_url, min_size=1, max_size=2)
    try:
        async with (
            running_sandbox(backoff=0.05) as sandbox,  # 4 quick tries, then the event is lost
            httpx.AsyncClient(base_url=base, timeout=10) as http,
        ):
            shop = Shop(fresh_db_url, http, sandbox, db, admin, [customer])
            env = _server_env(fresh_db_url, sandbox.url, tmp_path)
            hook = {
                "url": f"{base}{API}/payments/webhook",
                "secret": env["MERCATO_PAYMENT_WEBHOOK_SECRET"],
            }
            await sandbox.control("endpoints", hook)

            async with mercato_serve(env, port, log) as first:
                product = await shop.product(stock=10)
                reserved = await shop.place(product, quantity=2)
                paying = await shop.place(product, quantity=3)
                assert await shop.stock(product) == 5
                processing = await shop.pay(paying, "pm_card_delayed")
                paid_at = time.monotonic()
                assert processing.status_code == 202, processing.text
                first.send_signal(signal.SIGKILL)
                await asyncio.to_thread(first.wait, 10)
            assert first.returncode == -signal.SIGKILL

            intent_id = processing.json()["data"]["intent_id"]
            events = await eventually(
                lambda: sandbox.events(intent_id),
                lambda es: "payment_intent.succeeded" in {e["type"] for e in es},
            )
            succeeded = next(e for e in events if e["type"] == "payment_intent.succeeded")
            lost = await sandbox.settled_deliveries(succeeded["id"])
            assert [(d["status"], d["attempts"]) for d in lost] == [("failed", 4)]
            unsettled = await db.reader.fetchval(
                "SELECT status FROM payments.payments WHERE intent_id = $1", intent_id
            )
            assert unsettled == "processing"
            # Reconciliation looks at payments untouched for 1 s (the server's setting).
            await asyncio.sleep(max(0.0, 1.2 - (time.monotonic() - paid_at)))

            async with mercato_serve(env, port, log):
                # Its reconciliation job runs at start-up, its expiry sweep every 0.5 s.
                await shop.becomes(paying, "paid", timeout=5)
                await shop.becomes(reserved, "expired", timeout=10)
                assert await shop.stock(product) == 10 - 3
                assert [p["status"] for p in await shop.payments(paying)] == ["succeeded"]
                assert len(await sandbox.charges()) == 1
                assert await shop.order_events(paying) == 1
                assert await shop.order_events(reserved, "order.expired") == 1
    except BaseException:
        print(log.read_text() if log.exists() else "(no server log)")
        raise
    finally:
        await db.close()
