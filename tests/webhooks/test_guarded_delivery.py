"""Secret rotation as receivers see it, the SSRF guard at delivery time, and the whole
app (relay and delivery job in its lifespan) sending a real event."""

from __future__ import annotations

import httpx
import pytest
from tests.factories import product_payload, staff_headers
from tests.realtime.conftest import serving as serving_app
from tests.webhooks.conftest import API, Env, Receiver, eventually, load_example, status

from mercato.webhooks.signature import sign

pytestmark = pytest.mark.slow


async def test_during_a_rotation_both_secrets_sign_and_afterwards_only_the_new_one(
    env: Env, receiver: Receiver
) -> None:
    example = load_example()
    subscription = await env.subscribe(receiver.url("/rotating"))
    old_secret = subscription["secret"]
    response = await env.client.post(
        f"{API}/subscriptions/{subscription['id']}/rotate-secret",
        json={"overlap_minutes": 60},
        headers=env.admin,
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    new_secret = response.json()["data"]["secret"]
    assert new_secret.startswith("whsec_")
    assert new_secret != old_secret

    await env.log("product.created")
    async with env.delivering():
        [during] = await receiver.wait_for("/rotating", 1)
    signatures = during.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    message_id, timestamp = during.headers["webhook-id"], int(during.headers["webhook-timestamp"])
    expected = [
        sign(secret, message_id=message_id, timestamp=timestamp, body=during.body)
        for secret in (new_secret, old_secret)
    ]
    assert signatures == expected  # the new secret's first
    example.verify_webhook(new_secret, during.headers, during.body)
    example.verify_webhook(old_secret, during.headers, during.body)

    # The overlap ends: only the new secret signs.
    async with env.db.transaction() as conn:
        await conn.execute(
            "UPDATE webhooks.subscriptions SET previous_secret_expires_at = now() - interval '1 s'"
        )
    await env.log("product.updated")
    async with env.delivering():
        _, after = await receiver.wait_for("/rotating", 2)
    assert " " not in after.headers["webhook-signature"]
    example.verify_webhook(new_secret, after.headers, after.body)
    with pytest.raises(example.InvalidWebhook):
        example.verify_webhook(old_secret, after.headers, after.body)


async def test_redirects_are_failures_and_never_followed(env: Env, receiver: Receiver) -> None:
    to_metadata = await env.subscribe(
        receiver.answer(
            "/to-metadata", status(307, location="http://169.254.169.254/latest/meta-data/")
        )
    )
    to_loopback = await env.subscribe(
        receiver.answer("/to-landing", status(302, location=receiver.url("/landing")))
    )
    await env.log("product.created")
    async with env.delivering(webhook_max_attempts=2):

        async def both_dead() -> bool:
            for subscription in (to_metadata, to_loopback):
                if not await env.deliveries(subscription["id"], status="dead"):
                    return False
            return True

        await eventually(both_dead)
    assert [d["status_code"] for d in await env.deliveries(to_metadata["id"])] == [307, 307]
    assert [d["status_code"] for d in await env.deliveries(to_loopback["id"])] == [302, 302]
    assert {r.path for r in receiver.received} == {"/to-metadata", "/to-landing"}


async def test_every_attempt_checks_the_address_again(env: Env, receiver: Receiver) -> None:
    """Allowed when subscribed (loopback is allow-listed in tests); once the allow-list no
    longer holds loopback, attempts are refused without connecting."""
    subscription = await env.subscribe(receiver.url("/was-allowed"))
    await env.log("order.paid")
    async with env.delivering(webhook_allowed_networks=[], webhook_max_attempts=2):

        async def dead() -> bool:
            return bool(await env.deliveries(subscription["id"], status="dead"))

        await eventually(dead)
    attempts = await env.deliveries(subscription["id"])
    assert len(attempts) == 2
    for attempt in attempts:
        assert attempt["status_code"] is None
        assert attempt["error"].startswith("refused: ")
        assert "loopback" in attempt["error"]
    assert receiver.received == []


async def test_the_app_delivers_what_its_own_writes_record(
    fresh_db_url: str, receiver: Receiver
) -> None:
    """`mercato serve`: the relay and the delivery job run in the app's lifespan."""
    admin = await staff_headers(fresh_db_url)
    async with (
        serving_app(fresh_db_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}", headers=admin) as http,
    ):
        response = await http.post(
            f"{API}/subscriptions",
            json={"url": receiver.url("/products"), "event_types": ["product.created"]},
        )
        assert response.status_code == 201, response.text
        subscription = response.json()["data"]
        payload = product_payload()
        response = await http.post("/api/v1/products", json=payload)
        assert response.status_code == 201, response.text
        [received] = await receiver.wait_for("/products", 1, timeout=10)
        assert received.message["type"] == "product.created"
        assert received.message["data"]["sku"] == payload["sku"]
        load_example().verify_webhook(subscription["secret"], received.headers, received.body)

        async def recorded() -> bool:
            page = await http.get(
                f"{API}/deliveries", params={"subscription_id": subscription["id"]}
            )
            return [d["status"] for d in page.json()["data"]] == ["succeeded"]

        await eventually(recorded)
