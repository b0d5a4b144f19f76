"""Delivery to a real receiver: signed messages, order per subscription, retries, the
dead letter, resume and replay, 410, and one failing receiver never holding up others."""

from __future__ import annotations

import asyncio

import pytest
from starlette.requests import Request
from starlette.responses import Response
from tests.webhooks.conftest import API, Env, Receiver, eventually, load_example, status

pytestmark = pytest.mark.slow


async def test_messages_are_signed_and_the_documented_snippet_verifies_them(
    env: Env, receiver: Receiver
) -> None:
    subscription = await env.subscribe(receiver.url("/hooks"))
    positions = await env.log("product.created", "order.paid")
    async with env.delivering():
        received = await receiver.wait_for("/hooks", 2)
    example = load_example()
    for request, position in zip(received, positions, strict=True):
        example.verify_webhook(subscription["secret"], request.headers, request.body)
        message = request.message
        assert message["position"] == position
        assert set(message) == {"id", "type", "position", "occurred_at", "data"}
        assert request.headers["webhook-id"] == message["id"]
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == "Mercato-Webhooks/1"
        assert request.headers["webhook-signature"].startswith("v1,")
        assert " " not in request.headers["webhook-signature"]  # one secret, one signature
    assert [r.message["type"] for r in received] == ["product.created", "order.paid"]
    assert received[1].message["data"] == {"n": 1, "type": "order.paid"}
    tampered = received[0].body.replace(b'"position"', b'"Position"')
    with pytest.raises(example.InvalidWebhook):
        example.verify_webhook(subscription["secret"], received[0].headers, tampered)
    with pytest.raises(example.InvalidWebhook):
        example.verify_webhook("whsec_" + "A" * 43 + "=", received[0].headers, received[0].body)


async def test_a_subscription_gets_only_its_types_from_the_moment_it_was_created(
    env: Env, receiver: Receiver
) -> None:
    await env.log("order.paid")  # before the subscription: not delivered
    subscription = await env.subscribe(receiver.url("/orders"), ["order.paid", "order.cancelled"])
    positions = await env.log("product.created", "order.paid", "user.registered", "order.cancelled")
    async with env.delivering():
        await receiver.wait_for("/orders", 2)

        async def caught_up() -> bool:
            current = await env.subscription(subscription["id"])
            return bool(current["delivered_position"] == positions[-1])

        await eventually(caught_up)
    assert receiver.positions("/orders") == [positions[1], positions[3]]


async def test_a_failing_event_holds_back_only_its_own_subscription(
    env: Env, receiver: Receiver
) -> None:
    healthy = await env.subscribe(receiver.url("/healthy"))
    failing = await env.subscribe(receiver.answer("/failing", status(503)))
    positions = await env.log("product.created", "product.updated", "product.deleted")
    async with env.delivering(webhook_max_attempts=50):
        await receiver.wait_for("/healthy", 3)
        await receiver.wait_for("/failing", 3)  # the first event, retried
        assert set(receiver.positions("/failing")) == {positions[0]}
        receiver.answer("/failing", status(204))

        async def recovered() -> bool:
            return receiver.positions("/failing")[-3:] == positions  # in order

        await eventually(recovered)
    assert receiver.positions("/healthy") == positions
    failed = await env.deliveries(failing["id"], status="failed")
    assert failed
    assert {d["status_code"] for d in failed} == {503}
    assert {d["position"] for d in failed} == {positions[0]}
    assert [d["status"] for d in await env.deliveries(healthy["id"])] == ["succeeded"] * 3


async def test_a_hanging_receiver_does_not_delay_the_others(env: Env, receiver: Receiver) -> None:
    release = asyncio.Event()

    async def hang(_: Request) -> Response:
        await release.wait()
        return Response(status_code=200)

    await env.subscribe(receiver.answer("/hanging", hang))
    await env.subscribe(receiver.url("/prompt"))
    positions = await env.log("product.created", "product.updated")
    try:
        async with env.delivering(webhook_timeout_seconds=5.0):
            await receiver.wait_for("/hanging", 1)
            await receiver.wait_for("/prompt", 2)  # while the other attempt still hangs
            assert receiver.positions("/prompt") == positions
            assert len(receiver.at("/hanging")) == 1
            release.set()
            await receiver.wait_for("/hanging", 2)
    finally:
        release.set()


async def test_retries_run_out_then_the_subscription_is_paused_and_resumes_in_order(
    env: Env, receiver: Receiver
) -> None:
    subscription = await env.subscribe(receiver.answer("/down", status(500)))
    positions = await env.log("order.paid", "order.fulfilled")
    async with env.delivering(webhook_max_attempts=3):

        async def paused() -> bool:
            return (await env.subscription(subscription["id"]))["paused_at"] is not None

        await eventually(paused)
        stopped = await env.subscription(subscription["id"])
        assert stopped["active"] is False
        assert stopped["failures"] == 3
        assert stopped["last_error"] == "HTTP 500"
        attempts = await env.deliveries(subscription["id"])
        assert [d["attempt"] for d in attempts] == [3, 2, 1]  # newest first
        assert [d["status"] for d in attempts] == ["dead", "failed", "failed"]
        assert {d["position"] for d in attempts} == {positions[0]}
        await asyncio.sleep(0.2)
        assert len(receiver.at("/down")) == 3  # paused: nothing more is sent

        # The receiver is fixed; re-activating resumes from the dead-lettered event.
        receiver.answer("/down", status(200))
        response = await env.client.patch(
            f"{API}/subscriptions/{subscription['id']}", json={"active": True}, headers=env.admin
        )
        assert response.status_code == 200, response.text
        resumed = response.json()["data"]
        assert (resumed["active"], resumed["paused_at"], resumed["failures"]) == (True, None, 0)
        await receiver.wait_for("/down", 5)
    assert receiver.positions("/down") == [positions[0]] * 4 + [positions[1]]
    ids = {r.headers["webhook-id"] for r in receiver.at("/down")[:4]}
    assert len(ids) == 1  # every retry of an event carries the same webhook-id


async def test_a_dead_letter_is_replayed_as_a_new_attempt_with_the_same_webhook_id(
    env: Env, receiver: Receiver
) -> None:
    subscription = await env.subscribe(receiver.answer("/flaky", status(500)))
    await env.log("product.created")
    async with env.delivering(webhook_max_attempts=1):
        await receiver.wait_for("/flaky", 1)

        async def dead() -> bool:
            return bool(await env.deliveries(subscription["id"], status="dead"))

        await eventually(dead)
    [dead_letter] = await env.deliveries(subscription["id"], status="dead")
    receiver.answer("/flaky", status(202))
    response = await env.client.post(
        f"{API}/deliveries/{dead_letter['id']}/replay", headers=env.admin
    )
    assert response.status_code == 200, response.text
    replayed = response.json()["data"]
    assert replayed["id"] != dead_letter["id"]
    assert (replayed["status"], replayed["status_code"], replayed["replay"]) == (
        "succeeded",
        202,
        True,
    )
    assert replayed["attempt"] == 2
    assert replayed["event_id"] == dead_letter["event_id"]
    first, second = receiver.at("/flaky")
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == dead_letter["event_id"]
    # A one-off replay leaves the subscription as it was: still paused at that event.
    still = await env.subscription(subscription["id"])
    assert still["paused_at"] is not None
    assert still["active"] is False


async def test_410_gone_disables_the_subscription_at_once(env: Env, receiver: Receiver) -> None:
    subscription = await env.subscribe(receiver.answer("/gone", status(410)))
    await env.log("product.created", "product.updated")
    async with env.delivering():

        async def disabled() -> bool:
            return (await env.subscription(subscription["id"]))["active"] is False

        await eventually(disabled)
        await asyncio.sleep(0.2)
    current = await env.subscription(subscription["id"])
    assert current["paused_at"] is None  # disabled by the receiver, not paused by us
    assert current["last_error"] == "HTTP 410"
    assert len(receiver.at("/gone")) == 1
    [attempt] = await env.deliveries(subscription["id"])
    assert (attempt["status"], attempt["status_code"]) == ("failed", 410)


async def test_rewinding_a_subscription_delivers_again_in_order(
    env: Env, receiver: Receiver
) -> None:
    subscription = await env.subscribe(receiver.url("/again"))
    positions = await env.log("product.created", "product.updated", "product.deleted")
    async with env.delivering():
        await receiver.wait_for("/again", 3)
        response = await env.client.post(
            f"{API}/subscriptions/{subscription['id']}/replay",
            json={"from_position": positions[1]},
            headers=env.admin,
        )
        assert response.status_code == 200, response.text
        assert response.json()["data"]["delivered_position"] == positions[0]
        await receiver.wait_for("/again", 5)
    assert receiver.positions("/again") == positions + positions[1:]


async def test_the_admin_api_answers_with_the_attempts_an_operator_needs(
    env: Env, receiver: Receiver
) -> None:
    """The excerpt of the answer is kept (at most 500 characters)."""

    async def chatty(_: Request) -> Response:
        return Response("x" * 2_000, status_code=400)

    subscription = await env.subscribe(receiver.answer("/chatty", chatty))
    await env.log("order.paid")
    async with env.delivering(webhook_max_attempts=1):

        async def recorded() -> bool:
            return bool(await env.deliveries(subscription["id"]))

        await eventually(recorded)
    [attempt] = await env.deliveries(subscription["id"])
    assert attempt["status_code"] == 400
    assert attempt["response_excerpt"] == "x" * 500
    assert attempt["duration_ms"] >= 0
    assert attempt["error"] is None
