"""Paying orders end to end: Mercato and the Stripe sandbox on real ports, webhooks between.

Each test checks what the customer sees (the answer, the order's status), the stock, the
provider's side (never two charges for one order) and the event log (one `order.paid`).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson
import pytest

from mercato.payments.signature import sign
from tests.payments.conftest import API, WEBHOOK_SECRET, Shop

pytestmark = pytest.mark.slow


async def test_a_card_that_works_pays_the_order_once(shop: Shop) -> None:
    product = await shop.product(stock=5)
    order_id = await shop.place(product, quantity=2)
    assert await shop.stock(product) == 3

    paid = await shop.pay(order_id, "pm_card_visa")
    assert paid.status_code == 201, paid.text
    payment = paid.json()["data"]
    assert (payment["status"], payment["amount"], payment["currency"]) == ("succeeded", 2000, "USD")
    assert await shop.status(order_id) == "paid"
    charges = await shop.charges_of(order_id)
    assert [(c["amount"], c["payment_intent"]) for c in charges] == [(2000, payment["intent_id"])]
    before = (await shop.order(order_id), await shop.payments(order_id))

    # The success webhook that follows is accepted, and changes nothing.
    succeeded = await shop.sandbox.event(payment["intent_id"], "payment_intent.succeeded")
    delivered = await shop.sandbox.settled_deliveries(succeeded["id"])
    assert [(d["status"], d["response_status"]) for d in delivered] == [("delivered", 200)]
    assert (await shop.order(order_id), await shop.payments(order_id)) == before
    assert await shop.stock(product) == 3
    assert len(await shop.sandbox.charges()) == 1
    assert await shop.order_events(order_id) == 1


@pytest.mark.parametrize(
    ("method", "decline_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ],
)
async def test_a_declined_card_cancels_the_order_and_gives_its_stock_back(
    shop: Shop, method: str, decline_code: str
) -> None:
    product = await shop.product(stock=5)
    order_id = await shop.place(product, quantity=2)
    key = uuid.uuid4().hex

    declined = await shop.pay(order_id, method, idempotency_key=key)
    assert declined.status_code == 402, declined.text
    error = declined.json()["error"]
    assert error["code"] == "PAYMENT_DECLINED"
    assert (error["payment"]["status"], error["payment"]["failure_code"]) == (
        "failed",
        decline_code,
    )
    assert (await shop.order(order_id))["status"] == "cancelled"
    assert await shop.stock(product) == 5

    replayed = await shop.pay(order_id, method, idempotency_key=key)
    assert replayed.status_code == 402
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.content == declined.content

    # The failure webhook changes nothing either.
    intent_id = error["payment"]["intent_id"]
    failed = await shop.sandbox.event(intent_id, "payment_intent.payment_failed")
    assert (await shop.sandbox.settled_deliveries(failed["id"]))[0]["status"] == "delivered"
    assert await shop.status(order_id) == "cancelled"
    assert await shop.stock(product) == 5
    assert await shop.sandbox.charges() == []
    assert await shop.order_events(order_id, "order.paid") == 0
    assert await shop.order_events(order_id, "order.cancelled") == 1


async def test_a_delayed_payment_is_completed_by_its_webhook(shop: Shop) -> None:
    product = await shop.product(stock=5)
    order_id = await shop.place(product, quantity=2)

    processing = await shop.pay(order_id, "pm_card_delayed")
    assert processing.status_code == 202, processing.text
    assert processing.json()["data"]["status"] == "processing"
    assert await shop.status(order_id) == "pending_payment"

    await shop.becomes(order_id, "paid")
    assert [p["status"] for p in await shop.payments(order_id)] == ["succeeded"]
    assert len(await shop.charges_of(order_id)) == 1
    assert len(await shop.sandbox.charges()) == 1
    assert await shop.stock(product) == 3
    assert await shop.order_events(order_id) == 1


async def test_a_lost_answer_is_retried_with_the_same_provider_key(shop: Shop) -> None:
    product = await shop.product(stock=5)
    order_id = await shop.place(product, quantity=2)
    seen = len(shop.sandbox.counting.calls)

    paid = await shop.pay(order_id, "pm_card_networkFailure")
    assert paid.status_code == 201, paid.text
    assert paid.json()["data"]["status"] == "succeeded"
    calls = shop.sandbox.counting.calls[seen:]
    # The first answer was lost; the retry, under the same key, got it replayed.
    assert [call for call, _ in calls] == ["POST /v1/payment_intents"] * 2
    assert len({key for _, key in calls}) == 1
    assert await shop.status(order_id) == "paid"
    assert len(await shop.sandbox.charges()) == 1
    assert await shop.order_events(order_id) == 1


async def test_a_duplicated_webhook_is_acknowledged_and_ignored(shop: Shop) -> None:
    product = await shop.product(stock=5)
    order_id = await shop.place(product, quantity=2)
    intent_id = (await shop.pay(order_id, "pm_card_visa")).json()["data"]["intent_id"]
    succeeded = await shop.sandbox.event(intent_id, "payment_intent.succeeded")
    await shop.sandbox.settled_deliveries(succeeded["id"])

    for _ in range(2):
        await shop.sandbox.control(f"events/{succeeded['id']}/resend")
    deliveries = await shop.sandbox.settled_deliveries(succeeded["id"], count=3)
    assert [(d["status"], d["response_status"]) for d in deliveries] == [("delivered", 200)] * 3
    # What Mercato answers to a repeat (signed afresh, as every delivery is):
    body = orjson.dumps(succeeded)
    again = await shop.http.post(
        f"{API}/payments/webhook",
        content=body,
        headers={
            "stripe-signature": sign(WEBHOOK_SECRET, body, int(time.time())),
            "content-type": "application/json",
        },
    )
    assert again.json() == {"received": True, "duplicate": True}
    recorded = await shop.db.reader.fetchval(
        "SELECT count(*) FROM payments.webhook_events WHERE event_id = $1", succeeded["id"]
    )
    assert recorded == 1
    assert await shop.status(order_id) == "paid"
    assert await shop.order_events(order_id) == 1
    assert len(await shop.sandbox.charges()) == 1


async def test_every_step_done_twice_still_charges_and_pays_once(shop: Shop) -> None:
    product = await shop.product(stock=5)
    order_id = await shop.place(product, quantity=2)
    key = uuid.uuid4().hex

    first = await shop.pay(order_id, "pm_card_delayed", idempotency_key=key)
    second = await shop.pay(order_id, "pm_card_delayed", idempotency_key=key)
    assert (first.status_code, second.status_code) == (202, 202), second.text
    assert "idempotent-replayed" not in first.headers
    assert second.headers["idempotent-replayed"] == "true"
    assert second.content == first.content
    await shop.becomes(order_id, "paid")

    events = await shop.sandbox.events(first.json()["data"]["intent_id"])
    assert {e["type"] for e in events} >= {"payment_intent.processing", "payment_intent.succeeded"}
    for event in events:
        await shop.sandbox.control(f"events/{event['id']}/resend")
    for event in events:
        delivered = await shop.sandbox.settled_deliveries(event["id"], count=2)
        assert {d["status"] for d in delivered} == {"delivered"}
    assert await shop.reconcile() == 0
    assert await shop.reconcile() == 0

    third = await shop.pay(order_id, "pm_card_delayed", idempotency_key=key)
    assert (third.status_code, third.content) == (202, first.content)
    assert [p["status"] for p in await shop.payments(order_id)] == ["succeeded"]
    assert await shop.status(order_id) == "paid"
    assert len(await shop.sandbox.charges()) == 1
    assert await shop.order_events(order_id) == 1
    assert await shop.stock(product) == 3


async def test_a_second_key_while_the_first_is_at_the_provider_gets_409(shop: Shop) -> None:
    product = await shop.product(stock=5)
    order_id = await shop.place(product, quantity=2)
    gate = shop.sandbox.counting.hold()
    first = asyncio.create_task(shop.pay(order_id, "pm_card_visa"))
    await asyncio.wait_for(shop.sandbox.counting.arrived.wait(), 5)

    second = await shop.pay(order_id, "pm_card_visa")
    assert (second.status_code, second.json()["error"]["code"]) == (409, "PAYMENT_IN_PROGRESS")
    assert "idempotent-replayed" not in second.headers
    gate.set()
    assert (await first).status_code == 201
    third = await shop.pay(order_id, "pm_card_visa")
    assert (third.status_code, third.json()["error"]["code"]) == (409, "ORDER_INVALID_TRANSITION")

    assert len(await shop.payments(order_id)) == 1
    assert len(await shop.sandbox.charges()) == 1
    assert await shop.status(order_id) == "paid"
    assert await shop.order_events(order_id) == 1
    assert await shop.stock(product) == 3


async def test_a_second_key_arriving_as_the_first_settles_does_not_deadlock(shop: Shop) -> None:
    product = await shop.product(stock=5)
    order_id = await shop.place(product, quantity=2)
    await shop.sandbox.control("webhooks", {"paused": True})  # only the two requests race
    gate = shop.sandbox.counting.hold()
    first = asyncio.create_task(shop.pay(order_id, "pm_card_visa"))
    await asyncio.wait_for(shop.sandbox.counting.arrived.wait(), 5)
    # Pin the interleaving: the second request takes the order's lock first, just as the
    # first one, answered by the provider, has locked its payment and wants the order.
    async with shop.db.transaction() as conn:
        await conn.execute(
            "SELECT 1 FROM orders.orders WHERE id = $1 FOR UPDATE", uuid.UUID(order_id)
        )
        second = asyncio.create_task(shop.pay(order_id, "pm_card_visa"))
        await shop.lock_waiters(1)
        gate.set()
        await shop.lock_waiters(2)
    answers = await asyncio.gather(first, second)

    assert [a.status_code for a in answers] == [201, 409], [a.text for a in answers]
    assert len(await shop.sandbox.charges()) == 1
    assert await shop.status(order_id) == "paid"
    assert await shop.order_events(order_id) == 1


async def test_refunds_in_full_or_in_part_by_staff_only(shop: Shop) -> None:
    product = await shop.product(stock=5)
    whole, part = await shop.place(product), await shop.place(product)
    for order_id in (whole, part):
        assert (await shop.pay(order_id)).status_code == 201

    refused = await shop.refund(whole, {}, headers=shop.alice.headers)
    assert refused.status_code == 403, refused.text

    refunded = await shop.refund(whole, {})
    assert refunded.status_code == 200, refunded.text
    assert (refunded.json()["data"]["status"], refunded.json()["data"]["refunded_amount"]) == (
        "refunded",
        2000,
    )
    assert await shop.status(whole) == "refunded"
    nothing = await shop.refund(whole, {})
    assert (nothing.status_code, nothing.json()["error"]["code"]) == (409, "NOTHING_TO_REFUND")

    too_much = await shop.refund(part, {"amount": 2001})
    assert too_much.status_code == 422, too_much.text
    partial = await shop.refund(part, {"amount": 500})
    assert partial.status_code == 200, partial.text
    assert partial.json()["data"]["status"] == "partially_refunded"
    assert await shop.status(part) == "partially_refunded"

    charges = {c["payment_intent"]: c for c in await shop.sandbox.charges()}
    by_order = {o: (await shop.payments(o))[0]["intent_id"] for o in (whole, part)}
    assert charges[by_order[whole]]["amount_refunded"] == 2000
    assert charges[by_order[part]]["amount_refunded"] == 500
    assert await shop.order_events(whole, "order.refunded") == 1
    assert await shop.order_events(part, "order.partially_refunded") == 1


async def test_a_partial_refund_then_the_rest_then_nothing(shop: Shop) -> None:
    product = await shop.product(stock=5)
    order_id = await shop.place(product)
    assert (await shop.pay(order_id)).status_code == 201

    partial = await shop.refund(order_id, {"amount": 500})
    assert partial.json()["data"]["status"] == "partially_refunded"
    assert await shop.status(order_id) == "partially_refunded"

    rest = await shop.refund(order_id, {})
    assert rest.status_code == 200, rest.text
    assert (rest.json()["data"]["status"], rest.json()["data"]["refunded_amount"]) == (
        "refunded",
        2000,
    )
    assert await shop.status(order_id) == "refunded"
    nothing = await shop.refund(order_id, {})
    assert (nothing.status_code, nothing.json()["error"]["code"]) == (409, "NOTHING_TO_REFUND")
    assert (await shop.sandbox.charges())[0]["amount_refunded"] == 2000
