"""The sandbox speaks Stripe's PaymentIntents protocol: outcomes, errors, idempotency, controls."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
from starlette.applications import Starlette

from mercato.sandbox import ConnectionDropped
from tests.sandbox.conftest import (
    API_KEY,
    SETTLE_DELAY,
    charges,
    confirm,
    create_intent,
    stripe_client,
)


async def test_an_intent_without_a_method_requires_one(client: httpx.AsyncClient) -> None:
    intent = await create_intent(
        client, **{"metadata[order_id]": "42", "description": "Order 42", "currency": "EUR"}
    )
    assert intent["id"].startswith("pi_")
    assert intent["client_secret"].startswith(f"{intent['id']}_secret_")
    assert intent["object"] == "payment_intent"
    assert (intent["amount"], intent["currency"]) == (1000, "eur")
    assert intent["status"] == "requires_payment_method"
    assert intent["metadata"] == {"order_id": "42"}
    assert intent["description"] == "Order 42"
    assert intent["last_payment_error"] is None
    assert intent["latest_charge"] is None
    fetched = await client.get(f"/v1/payment_intents/{intent['id']}")
    assert fetched.json() == intent


async def test_create_then_confirm_charges_once(client: httpx.AsyncClient) -> None:
    intent = await create_intent(client, payment_method="pm_card_visa")
    assert intent["status"] == "requires_confirmation"
    response = await confirm(client, intent["id"])
    assert response.status_code == 200
    confirmed = response.json()
    assert confirmed["status"] == "succeeded"
    assert confirmed["amount_received"] == 1000
    assert confirmed["latest_charge"].startswith("ch_")
    assert [(c["id"], c["payment_intent"], c["amount"]) for c in await charges(client)] == [
        (confirmed["latest_charge"], intent["id"], 1000)
    ]


async def test_create_with_confirm_true_confirms_at_once(client: httpx.AsyncClient) -> None:
    intent = await create_intent(client, payment_method="pm_card_visa", confirm="true")
    assert intent["status"] == "succeeded"
    assert len(await charges(client)) == 1


@pytest.mark.parametrize(
    ("method", "decline_code"),
    [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds"),
    ],
)
async def test_declines_answer_402_and_want_another_method(
    client: httpx.AsyncClient, method: str, decline_code: str
) -> None:
    intent = await create_intent(client)
    response = await confirm(client, intent["id"], method)
    assert response.status_code == 402
    error = response.json()["error"]
    assert (error["type"], error["code"], error["decline_code"]) == (
        "card_error",
        "card_declined",
        decline_code,
    )
    assert error["message"]
    assert error["payment_intent"]["id"] == intent["id"]
    assert error["payment_intent"]["status"] == "requires_payment_method"
    fetched = (await client.get(f"/v1/payment_intents/{intent['id']}")).json()
    last_error = fetched["last_payment_error"]
    assert {k: last_error[k] for k in ("type", "code", "decline_code", "message")} == {
        k: error[k] for k in ("type", "code", "decline_code", "message")
    }
    assert await charges(client) == []
    retried = await confirm(client, intent["id"], "pm_card_visa")
    assert retried.json()["status"] == "succeeded"
    assert retried.json()["last_payment_error"] is None


async def test_delayed_payment_processes_then_succeeds(client: httpx.AsyncClient) -> None:
    intent = await create_intent(client)
    response = await confirm(client, intent["id"], "pm_card_delayed")
    assert (response.status_code, response.json()["status"]) == (200, "processing")
    assert await charges(client) == []
    await asyncio.sleep(SETTLE_DELAY + 0.2)
    fetched = (await client.get(f"/v1/payment_intents/{intent['id']}")).json()
    assert fetched["status"] == "succeeded"
    assert [c["payment_intent"] for c in await charges(client)] == [intent["id"]]


async def test_lost_response_is_recovered_by_retrying_with_the_key(
    client: httpx.AsyncClient,
) -> None:
    intent = await create_intent(client)
    with pytest.raises(ConnectionDropped, match="without sending a response"):
        await confirm(client, intent["id"], "pm_card_networkFailure", key="confirm-1")
    assert len(await charges(client)) == 1  # charged although the caller never heard
    retry = await confirm(client, intent["id"], "pm_card_networkFailure", key="confirm-1")
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["status"] == "succeeded"
    assert len(await charges(client)) == 1
    # Without the key the retry is a second confirmation, which Stripe refuses.
    again = await confirm(client, intent["id"], "pm_card_networkFailure")
    assert again.json()["error"]["code"] == "payment_intent_unexpected_state"
    assert len(await charges(client)) == 1


async def test_same_key_same_params_replays_the_answer(client: httpx.AsyncClient) -> None:
    params = {"amount": "500", "currency": "usd", "metadata[order_id]": "7"}
    first = await client.post("/v1/payment_intents", data=params, headers={"Idempotency-Key": "a"})
    second = await client.post("/v1/payment_intents", data=params, headers={"Idempotency-Key": "a"})
    assert second.status_code == first.status_code == 200
    assert second.content == first.content
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    events = (await client.get("/_sandbox/events")).json()
    assert [e["type"] for e in events] == ["payment_intent.created"]


async def test_a_decline_is_replayed_too(client: httpx.AsyncClient) -> None:
    intent = await create_intent(client)
    first = await confirm(client, intent["id"], "pm_card_chargeDeclined", key="d")
    second = await confirm(client, intent["id"], "pm_card_chargeDeclined", key="d")
    assert (first.status_code, second.status_code) == (402, 402)
    assert second.content == first.content
    assert second.headers["Idempotent-Replayed"] == "true"


async def test_same_key_other_params_or_endpoint_is_an_idempotency_error(
    client: httpx.AsyncClient,
) -> None:
    intent = await create_intent(client, **{"metadata[n]": "1"})
    headers = {"Idempotency-Key": "b"}
    await client.post(
        "/v1/payment_intents", data={"amount": "1", "currency": "usd"}, headers=headers
    )
    other = await client.post(
        "/v1/payment_intents", data={"amount": "2", "currency": "usd"}, headers=headers
    )
    assert other.status_code == 400
    assert other.json()["error"]["type"] == "idempotency_error"
    assert "same parameters" in other.json()["error"]["message"]
    elsewhere = await client.post(f"/v1/payment_intents/{intent['id']}/cancel", headers=headers)
    assert elsewhere.json()["error"]["type"] == "idempotency_error"
    assert "same endpoint" in elsewhere.json()["error"]["message"]


async def test_keys_are_per_api_key(app: Starlette, client: httpx.AsyncClient) -> None:
    data = {"amount": "1", "currency": "usd"}
    mine = await client.post("/v1/payment_intents", data=data, headers={"Idempotency-Key": "c"})
    async with stripe_client(app, "sk_test_other") as other_client:
        theirs = await other_client.post(
            "/v1/payment_intents", data=data, headers={"Idempotency-Key": "c"}
        )
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]


async def test_invalid_parameters_are_not_kept_under_the_key(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "e"}
    bad = await client.post(
        "/v1/payment_intents", data={"amount": "-5", "currency": "usd"}, headers=headers
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "parameter_invalid_integer"
    good = await client.post(
        "/v1/payment_intents", data={"amount": "5", "currency": "usd"}, headers=headers
    )
    assert good.status_code == 200


async def test_concurrent_confirms_charge_once(client: httpx.AsyncClient) -> None:
    intent = await create_intent(client)
    answers = await asyncio.gather(
        *(confirm(client, intent["id"], "pm_card_visa") for _ in range(20))
    )
    assert sorted(a.status_code for a in answers) == [200] + [400] * 19
    assert len(await charges(client)) == 1


async def test_cancel(client: httpx.AsyncClient) -> None:
    intent = await create_intent(client)
    response = await client.post(
        f"/v1/payment_intents/{intent['id']}/cancel",
        data={"cancellation_reason": "requested_by_customer"},
    )
    canceled = response.json()
    assert (canceled["status"], canceled["cancellation_reason"]) == (
        "canceled",
        "requested_by_customer",
    )
    assert canceled["canceled_at"] is not None
    for again in (
        await confirm(client, intent["id"], "pm_card_visa"),
        await client.post(f"/v1/payment_intents/{intent['id']}/cancel"),
    ):
        assert again.status_code == 400
        assert again.json()["error"]["code"] == "payment_intent_unexpected_state"


async def test_a_succeeded_intent_cannot_be_canceled(client: httpx.AsyncClient) -> None:
    intent = await create_intent(client, payment_method="pm_card_visa", confirm="true")
    response = await client.post(f"/v1/payment_intents/{intent['id']}/cancel")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "payment_intent_unexpected_state"


async def test_canceling_while_processing_stops_the_settlement(client: httpx.AsyncClient) -> None:
    intent = await create_intent(client, payment_method="pm_card_delayed", confirm="true")
    canceled = await client.post(f"/v1/payment_intents/{intent['id']}/cancel")
    assert canceled.json()["status"] == "canceled"
    await asyncio.sleep(SETTLE_DELAY + 0.2)
    assert (await client.get(f"/v1/payment_intents/{intent['id']}")).json()["status"] == "canceled"
    assert await charges(client) == []


async def test_refunds_partial_then_the_rest(client: httpx.AsyncClient) -> None:
    intent = await create_intent(client, payment_method="pm_card_visa", confirm="true")
    partial = await client.post(
        "/v1/refunds", data={"payment_intent": intent["id"], "amount": "300"}
    )
    refund = partial.json()
    assert refund["id"].startswith("re_")
    assert {k: refund[k] for k in ("object", "amount", "currency", "payment_intent", "status")} == {
        "object": "refund",
        "amount": 300,
        "currency": "eur",
        "payment_intent": intent["id"],
        "status": "succeeded",
    }
    too_much = await client.post(
        "/v1/refunds", data={"payment_intent": intent["id"], "amount": "701"}
    )
    assert too_much.status_code == 400
    assert too_much.json()["error"]["code"] == "amount_too_large"
    rest = await client.post("/v1/refunds", data={"payment_intent": intent["id"]})
    assert rest.json()["amount"] == 700
    none_left = await client.post("/v1/refunds", data={"payment_intent": intent["id"]})
    assert none_left.json()["error"]["code"] == "charge_already_refunded"
    fetched = await client.get(f"/v1/refunds/{refund['id']}")
    assert fetched.json() == refund
    assert (await charges(client))[0]["amount_refunded"] == 1000


async def test_a_full_refund_by_default(client: httpx.AsyncClient) -> None:
    intent = await create_intent(client, payment_method="pm_card_visa", confirm="true")
    refund = await client.post("/v1/refunds", data={"payment_intent": intent["id"]})
    assert refund.json()["amount"] == 1000


async def test_an_unpaid_intent_cannot_be_refunded(client: httpx.AsyncClient) -> None:
    intent = await create_intent(client)
    refund = await client.post("/v1/refunds", data={"payment_intent": intent["id"]})
    assert refund.status_code == 400
    assert refund.json()["error"]["code"] == "payment_intent_unexpected_state"


async def test_outage_answers_503_until_over(client: httpx.AsyncClient) -> None:
    intent = await create_intent(client)
    assert (await client.post("/_sandbox/outage", json={"down": True})).json() == {"down": True}
    for response in (
        await client.get(f"/v1/payment_intents/{intent['id']}"),
        await confirm(client, intent["id"], "pm_card_visa"),
    ):
        assert response.status_code == 503
        assert response.json()["error"]["type"] == "api_error"
    await client.post("/_sandbox/outage", json={"down": False})
    assert (await confirm(client, intent["id"], "pm_card_visa")).status_code == 200


async def test_api_keys(app: Starlette) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://s") as c:
        missing = await c.post("/v1/payment_intents", data={"amount": "1", "currency": "usd"})
        live = await c.get(
            "/v1/payment_intents/pi_x", headers={"Authorization": "Bearer sk_live_abcdefgh1234"}
        )
        basic = base64.b64encode(f"{API_KEY}:".encode()).decode()
        curl = await c.post(
            "/v1/payment_intents",
            data={"amount": "1", "currency": "usd"},
            headers={"Authorization": f"Basic {basic}"},
        )
    for response in (missing, live):
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert "abcdefgh" not in live.json()["error"]["message"]
    assert curl.status_code == 200


async def test_unknown_objects_are_404(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/v1/payment_intents/pi_nope"),
        await confirm(client, "pi_nope", "pm_card_visa"),
        await client.post("/v1/payment_intents/pi_nope/cancel"),
        await client.post("/v1/refunds", data={"payment_intent": "pi_nope"}),
        await client.get("/v1/refunds/re_nope"),
    ):
        assert response.status_code == 404
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "resource_missing")
    unrouted = await client.get("/v1/customers")
    assert unrouted.status_code == 404
    assert unrouted.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("data", "code", "param"),
    [
        ({"currency": "usd"}, "parameter_missing", "amount"),
        ({"amount": "1.5", "currency": "usd"}, "parameter_invalid_integer", "amount"),
        ({"amount": "0", "currency": "usd"}, "parameter_invalid_integer", "amount"),
        ({"amount": "1"}, "parameter_missing", "currency"),
        ({"amount": "1", "currency": "euro"}, "parameter_invalid_string", "currency"),
        (
            {"amount": "1", "currency": "usd", "confirm": "yes"},
            "parameter_invalid_boolean",
            "confirm",
        ),
        (
            {"amount": "1", "currency": "usd", "capture_method": "manual"},
            "parameter_unknown",
            "capture_method",
        ),
    ],
)
async def test_invalid_parameters(
    client: httpx.AsyncClient, data: dict[str, str], code: str, param: str
) -> None:
    response = await client.post("/v1/payment_intents", data=data)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", code, param)


async def test_unknown_or_missing_payment_method(client: httpx.AsyncClient) -> None:
    intent = await create_intent(client)
    missing = await confirm(client, intent["id"])
    assert missing.json()["error"]["code"] == "payment_intent_unexpected_state"
    unknown = await confirm(client, intent["id"], "pm_card_unicorn")
    assert unknown.status_code == 400
    assert (unknown.json()["error"]["code"], unknown.json()["error"]["param"]) == (
        "resource_missing",
        "payment_method",
    )
    at_creation = await client.post(
        "/v1/payment_intents",
        data={"amount": "1", "currency": "usd", "payment_method": "pm_x", "confirm": "true"},
    )
    assert at_creation.json()["error"]["code"] == "resource_missing"
    events = (await client.get("/_sandbox/events")).json()
    assert len(events) == 1  # only the first intent: nothing was created for pm_x
