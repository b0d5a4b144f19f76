"""The sandbox's webhooks: signed as Stripe signs them, retried, lost on demand, resent."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time

import httpx
from starlette.applications import Starlette

from mercato.sandbox import ConnectionDropped, create_sandbox_app, sandbox_state
from tests.sandbox.conftest import (
    SECRET,
    Receiver,
    charges,
    confirm,
    create_intent,
    free_port,
    stripe_client,
)


def verifies(header: str, payload: bytes, secret: str, tolerance: int = 300) -> bool:
    """Stripe's documented scheme, written from the docs, not from the sandbox."""
    items = [item.split("=", 1) for item in header.split(",")]
    timestamp = next(value for name, value in items if name == "t")
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256
    ).hexdigest()
    signatures = [value for name, value in items if name == "v1"]
    fresh = abs(time.time() - int(timestamp)) <= tolerance
    return fresh and any(hmac.compare_digest(expected, s) for s in signatures)


async def test_events_are_signed_with_the_endpoint_secret(
    hooked_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    intent = await create_intent(hooked_client, **{"metadata[order_id]": "42"})
    await confirm(hooked_client, intent["id"], "pm_card_visa", key="pay-42")
    [event] = await receiver.wait_for("payment_intent.succeeded")
    assert event["id"].startswith("evt_")
    assert (event["object"], event["livemode"]) == ("event", False)
    assert isinstance(event["created"], int)
    assert event["data"]["object"]["id"] == intent["id"]
    assert event["data"]["object"]["status"] == "succeeded"
    assert event["data"]["object"]["metadata"] == {"order_id": "42"}
    assert event["request"]["idempotency_key"] == "pay-42"
    headers, payload = next(r for r in receiver.received if b"payment_intent.succeeded" in r[1])
    assert headers["content-type"].startswith("application/json")
    assert verifies(headers["stripe-signature"], payload, SECRET)
    assert not verifies(headers["stripe-signature"], payload, "whsec_wrong")
    assert not verifies(headers["stripe-signature"], payload + b" ", SECRET)


async def test_a_delayed_payment_is_announced_when_it_settles(
    hooked_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    intent = await create_intent(hooked_client, payment_method="pm_card_delayed", confirm="true")
    assert intent["status"] == "processing"
    await receiver.wait_for("payment_intent.processing")
    assert receiver.events("payment_intent.succeeded") == []
    [event] = await receiver.wait_for("payment_intent.succeeded")
    assert event["data"]["object"]["latest_charge"] is not None
    assert event["request"] == {"id": None, "idempotency_key": None}  # not caused by a request
    assert len(await charges(hooked_client)) == 1


async def test_declines_cancels_and_refunds_are_announced(
    hooked_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    declined = await create_intent(hooked_client)
    await confirm(hooked_client, declined["id"], "pm_card_chargeDeclined")
    await hooked_client.post(f"/v1/payment_intents/{declined['id']}/cancel")
    paid = await create_intent(hooked_client, payment_method="pm_card_visa", confirm="true")
    refund = (
        await hooked_client.post("/v1/refunds", data={"payment_intent": paid["id"], "amount": "1"})
    ).json()
    [failed] = await receiver.wait_for("payment_intent.payment_failed")
    assert failed["data"]["object"]["last_payment_error"]["decline_code"] == "generic_decline"
    [canceled] = await receiver.wait_for("payment_intent.canceled")
    assert canceled["data"]["object"]["id"] == declined["id"]
    [refunded] = await receiver.wait_for("refund.created")
    assert refunded["data"]["object"] == refund


async def test_a_lost_response_still_sends_the_webhook(
    hooked_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    intent = await create_intent(hooked_client)
    try:
        await confirm(hooked_client, intent["id"], "pm_card_networkFailure")
    except ConnectionDropped:
        pass
    else:
        raise AssertionError("the response should have been lost")
    [event] = await receiver.wait_for("payment_intent.succeeded")
    assert event["data"]["object"]["id"] == intent["id"]


async def test_paused_webhooks_are_lost_until_resent(
    hooked_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    assert (await hooked_client.post("/_sandbox/webhooks", json={"paused": True})).json() == {
        "paused": True
    }
    intent = await create_intent(hooked_client, payment_method="pm_card_visa", confirm="true")
    await hooked_client.post("/_sandbox/webhooks", json={"paused": False})
    await asyncio.sleep(0.2)
    assert receiver.received == []  # unpausing does not send what was lost
    events = (await hooked_client.get("/_sandbox/events")).json()
    [succeeded] = [e for e in events if e["type"] == "payment_intent.succeeded"]
    assert succeeded["data"]["object"]["id"] == intent["id"]
    resend = await hooked_client.post(f"/_sandbox/events/{succeeded['id']}/resend")
    assert (resend.status_code, resend.json()) == (202, {"id": succeeded["id"], "endpoints": 1})
    assert await receiver.wait_for("payment_intent.succeeded") == [succeeded]
    await hooked_client.post(f"/_sandbox/events/{succeeded['id']}/resend")
    assert await receiver.wait_for("payment_intent.succeeded", 2) == [succeeded, succeeded]
    unknown = await hooked_client.post("/_sandbox/events/evt_nope/resend")
    assert unknown.status_code == 404


async def test_failed_deliveries_are_retried(
    hooked_client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.failures = 2
    await create_intent(hooked_client)
    for _ in range(200):
        deliveries = (await hooked_client.get("/_sandbox/deliveries")).json()
        if deliveries[0]["status"] != "pending":
            break
        await asyncio.sleep(0.01)
    assert len(receiver.received) == 3
    assert receiver.received[0][1] == receiver.received[2][1]  # the same event each time
    event = receiver.events()[0]
    assert deliveries == [
        {
            "event": event["id"],
            "url": receiver.url,
            "status": "delivered",
            "attempts": 3,
            "response_status": 200,
            "error": None,
        }
    ]


async def test_delivery_gives_up_after_three_retries(receiver: Receiver) -> None:
    app = create_sandbox_app(webhook_endpoints=[(f"http://127.0.0.1:{free_port()}/", "s")])
    sandbox_state(app).webhooks.backoff = 0.01
    try:
        async with stripe_client(app) as client:
            await create_intent(client)
            for _ in range(200):
                [delivery] = (await client.get("/_sandbox/deliveries")).json()
                if delivery["status"] != "pending":
                    break
                await asyncio.sleep(0.01)
        assert (delivery["status"], delivery["attempts"]) == ("failed", 4)
        assert delivery["error"].startswith("ConnectError")
    finally:
        await sandbox_state(app).aclose()


async def test_endpoints_can_be_added_at_run_time(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    added = await client.post("/_sandbox/endpoints", json={"url": receiver.url, "secret": "s2"})
    assert (added.status_code, added.json()) == (201, [{"url": receiver.url, "secret": "s2"}])
    await create_intent(client)
    await receiver.wait_for("payment_intent.created")
    headers, payload = receiver.received[0]
    assert verifies(headers["stripe-signature"], payload, "s2")
    generated = await client.post("/_sandbox/endpoints", json={"url": "http://127.0.0.1:9/x"})
    assert generated.json()[1]["secret"].startswith("whsec_")


async def test_deliveries_can_go_through_an_injected_transport() -> None:
    receiver = Receiver()
    app: Starlette = create_sandbox_app(
        webhook_endpoints=[("http://mercato/hooks", SECRET)],
        webhook_transport=httpx.ASGITransport(receiver.app),
    )
    try:
        async with stripe_client(app) as client:
            await create_intent(client)
            [event] = await receiver.wait_for("payment_intent.created")
        headers, payload = receiver.received[0]
        assert verifies(headers["stripe-signature"], payload, SECRET)
        assert event["type"] == "payment_intent.created"
    finally:
        await sandbox_state(app).aclose()
