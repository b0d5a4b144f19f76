"""The provider's webhook through the HTTP API: verified, applied once, idempotent."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import httpx
import orjson

from mercato.payments import repository
from mercato.payments.signature import sign
from tests.factories import TestUser, create_product
from tests.settings import make_settings

API = "/api/v1"
SECRET = make_settings().payment_webhook_secret.get_secret_value()  # type: ignore[union-attr]


async def pending_payment(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    customer: TestUser,
    conn: asyncpg.Connection,
    *,
    stock: int = 5,
) -> tuple[dict[str, Any], Any]:
    product = await create_product(client, admin, inventory_count=stock, price="10.00")
    order = (
        await client.post(
            f"{API}/orders",
            json={"lines": [{"product_id": product["id"], "quantity": 2}]},
            headers={**customer.headers, "Idempotency-Key": uuid.uuid4().hex},
        )
    ).json()["data"]
    payment = await repository.insert_payment(
        conn,
        {
            "order_id": uuid.UUID(order["id"]),
            "customer_id": customer.id,
            "amount": 2000,
            "currency": "EUR",
            "payment_method": "pm_card_delayed",
        },
    )
    payment = await repository.update_payment(
        conn, payment["id"], {"intent_id": f"pi_{uuid.uuid4().hex}", "status": "processing"}
    )
    return order, payment


def event(event_type: str, payment: Any, status: str, **extra: Any) -> bytes:
    intent = {
        "id": payment["intent_id"],
        "object": "payment_intent",
        "amount": payment["amount"],
        "currency": "eur",
        "status": status,
        "metadata": {"payment_id": str(payment["id"])},
        **extra,
    }
    body = {"id": f"evt_{uuid.uuid4().hex}", "type": event_type, "data": {"object": intent}}
    return orjson.dumps(body)


async def deliver(
    client: httpx.AsyncClient, body: bytes, *, secret: str = SECRET, at: float | None = None
) -> httpx.Response:
    header = sign(secret, body, int(at if at is not None else time.time()))
    return await client.post(
        f"{API}/payments/webhook",
        content=body,
        headers={"stripe-signature": header, "content-type": "application/json"},
    )


async def order_status(client: httpx.AsyncClient, customer: TestUser, order: dict[str, Any]) -> str:
    read = await client.get(f"{API}/orders/{order['id']}", headers=customer.headers)
    status: str = read.json()["data"]["status"]
    return status


async def test_a_success_event_pays_the_order_once(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser, conn: asyncpg.Connection
) -> None:
    order, payment = await pending_payment(client, admin, customer, conn)
    body = event("payment_intent.succeeded", payment, "succeeded")
    first = await deliver(client, body)
    assert first.json() == {"received": True, "duplicate": False}
    again = await deliver(client, body)
    assert again.json() == {"received": True, "duplicate": True}
    assert await order_status(client, customer, order) == "paid"
    paid_events = await conn.fetchval(
        "SELECT count(*) FROM events.outbox WHERE type = 'order.paid' AND aggregate_id = $1",
        order["id"],
    )
    assert paid_events == 1
    stored = await repository.get_payment(conn, payment["id"])
    assert stored["status"] == "succeeded"


async def test_a_failure_event_cancels_the_order_and_releases_its_stock(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser, conn: asyncpg.Connection
) -> None:
    order, payment = await pending_payment(client, admin, customer, conn)
    failed = event(
        "payment_intent.payment_failed",
        payment,
        "requires_payment_method",
        last_payment_error={"code": "card_declined", "decline_code": "insufficient_funds"},
    )
    assert (await deliver(client, failed)).status_code == 200
    assert await order_status(client, customer, order) == "cancelled"
    stock = await conn.fetchval(
        "SELECT inventory_count FROM catalog.products WHERE id = $1",
        uuid.UUID(order["lines"][0]["product_id"]),
    )
    assert stock == 5
    stored = await repository.get_payment(conn, payment["id"])
    assert (stored["status"], stored["failure_code"]) == ("failed", "insufficient_funds")
    # A late success for a failed attempt changes nothing.
    await deliver(client, event("payment_intent.succeeded", payment, "succeeded"))
    assert await order_status(client, customer, order) == "cancelled"


async def test_bad_signatures_and_stale_events_are_refused_and_not_applied(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser, conn: asyncpg.Connection
) -> None:
    order, payment = await pending_payment(client, admin, customer, conn)
    body = event("payment_intent.succeeded", payment, "succeeded")
    for response in (
        await deliver(client, body, secret="whsec_wrong"),
        await deliver(client, body, at=time.time() - 600),
        await client.post(
            f"{API}/payments/webhook", content=body, headers={"content-type": "application/json"}
        ),
    ):
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "WEBHOOK_SIGNATURE_INVALID"
    assert await order_status(client, customer, order) == "pending_payment"
    assert await conn.fetchval("SELECT count(*) FROM payments.webhook_events") == 0


async def test_money_for_an_order_that_expired_meanwhile_is_marked_for_refund(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser, conn: asyncpg.Connection
) -> None:
    order, payment = await pending_payment(client, admin, customer, conn)
    await conn.execute(
        "UPDATE orders.orders SET status = 'expired' WHERE id = $1", uuid.UUID(order["id"])
    )
    await deliver(client, event("payment_intent.succeeded", payment, "succeeded"))
    stored = await repository.get_payment(conn, payment["id"])
    assert stored["status"] == "refund_pending"
    assert await order_status(client, customer, order) == "expired"


async def test_events_for_unknown_intents_are_acknowledged(client: httpx.AsyncClient) -> None:
    body = orjson.dumps(
        {
            "id": "evt_unknown",
            "type": "payment_intent.succeeded",
            "data": {
                "object": {"id": "pi_nobody", "status": "succeeded", "amount": 1, "currency": "eur"}
            },
        }
    )
    assert (await deliver(client, body)).json() == {"received": True, "duplicate": False}
    assert (await deliver(client, b"not json")).status_code == 422


async def test_a_charge_for_an_attempt_closed_without_an_answer_is_refunded(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser, conn: asyncpg.Connection
) -> None:
    """The provider charged, but its answer and webhook were late: we had closed the
    attempt (order closed meanwhile). The late success must turn into a refund."""
    _, payment = await pending_payment(client, admin, customer, conn)
    await conn.execute(
        "UPDATE payments.payments SET intent_id = NULL, status = 'pending' WHERE id = $1",
        payment["id"],
    )
    await repository.fail_unanswered(conn, payment["id"], failure_code="order_closed")
    closed = await repository.get_payment(conn, payment["id"])
    assert closed["status"] == "canceled"
    late = event("payment_intent.succeeded", {**dict(payment), "intent_id": "pi_late"}, "succeeded")
    assert (await deliver(client, late)).status_code == 200
    stored = await repository.get_payment(conn, payment["id"])
    assert (stored["status"], stored["intent_id"]) == ("refund_pending", "pi_late")


async def test_closing_an_unanswered_attempt_never_overwrites_an_outcome(
    client: httpx.AsyncClient, admin: dict[str, str], customer: TestUser, conn: asyncpg.Connection
) -> None:
    _, payment = await pending_payment(client, admin, customer, conn)  # processing
    await repository.fail_unanswered(conn, payment["id"], failure_code="provider_refused")
    assert (await repository.get_payment(conn, payment["id"]))["status"] == "processing"
