"""Order topics over a real port: only the owner (or staff) may follow an order."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson

from tests.factories import TestUser, identity_runtime, make_user, product_payload
from tests.realtime.conftest import StreamClient, serving, stream_client


async def _users(database_url: str, *roles: str) -> list[TestUser]:
    """Commit one user per role (a TestUser each, with a bearer header)."""
    async with identity_runtime(database_url) as runtime, runtime.db.transaction() as conn:
        return [await make_user(conn, runtime, roles=(role,)) for role in roles]


def _token(user: TestUser) -> str:
    return user.headers["Authorization"].removeprefix("Bearer ")


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def _product(http: httpx.AsyncClient, admin: TestUser) -> str:
    response = await http.post(
        "/api/v1/products", json=product_payload(inventory_count=5), headers=admin.headers
    )
    assert response.status_code == 201, response.text
    product_id: str = response.json()["data"]["id"]
    return product_id


async def _place(http: httpx.AsyncClient, customer: TestUser, product_id: str) -> dict[str, Any]:
    response = await http.post(
        "/api/v1/orders",
        json={"lines": [{"product_id": product_id, "quantity": 1}]},
        headers={**customer.headers, **_key()},
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()["data"]
    return order


async def _cancel(http: httpx.AsyncClient, user: TestUser, order_id: str) -> dict[str, Any]:
    response = await http.post(
        f"/api/v1/orders/{order_id}/cancel", json={}, headers={**user.headers, **_key()}
    )
    assert response.status_code == 200, response.text
    order: dict[str, Any] = response.json()["data"]
    return order


async def _authenticate(client: StreamClient, user: TestUser) -> None:
    await client.send({"type": "auth", "token": _token(user)})
    answer = await client.receive()
    assert answer == {"type": "authenticated", "principal": str(user.id)}


async def _refused(client: StreamClient, topics: list[str]) -> dict[str, Any]:
    """Subscribe to `topics` and return the error; nothing else may arrive first."""
    await client.send({"type": "subscribe", "topics": topics})
    answer = await client.receive()
    assert answer["type"] == "error", answer
    assert answer["code"] == "FORBIDDEN_TOPIC", answer
    return answer


async def _events_until(
    client: StreamClient, event_type: str, aggregate_id: str
) -> list[dict[str, Any]]:
    """Every event received up to and including the first `event_type` of `aggregate_id`."""
    received: list[dict[str, Any]] = []
    while True:
        message = await client.receive()
        assert message["type"] in ("event", "heartbeat"), message
        if message["type"] != "event":
            continue
        received.append(message)
        event = message["event"]
        if event["type"] == event_type and event["aggregate_id"] == aggregate_id:
            return received


async def _sse_until(response: httpx.Response, event_type: str) -> list[dict[str, Any]]:
    """The SSE events (`event` name and decoded `data`) up to the first of `event_type`."""
    events: list[dict[str, Any]] = []
    name = ""
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            name = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            events.append({"event": name, "data": orjson.loads(line.partition(":")[2])})
            if name == event_type:
                return events
    raise AssertionError(f"the stream ended before {event_type}: {events}")


async def test_the_owner_follows_their_order_and_sees_it_cancelled(fresh_db_url: str) -> None:
    admin, owner = await _users(fresh_db_url, "admin", "customer")
    async with (
        serving(fresh_db_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=20) as http,
        stream_client(address) as client,
    ):
        order = await _place(http, owner, await _product(http, admin))
        topic = f"orders:{order['id']}"
        await _authenticate(client, owner)
        assert (await client.subscribe([topic]))["topics"] == [topic]
        cancelled = await _cancel(http, owner, order["id"])
        received = await _events_until(client, "order.cancelled", order["id"])
    assert {m["topic"] for m in received} == {topic}
    # the hub may still have been behind the order's creation when the owner subscribed
    assert [m["event"]["type"] for m in received] in (
        ["order.cancelled"],
        ["order.created", "order.cancelled"],
    )
    event = received[-1]["event"]
    assert event["aggregate_type"] == "order"
    assert event["payload"] == cancelled
    assert event["payload"]["status"] == "cancelled"
    assert event["payload"]["customer_id"] == str(owner.id)


async def test_another_customer_may_not_follow_an_order_and_gets_none_of_its_events(
    fresh_db_url: str,
) -> None:
    admin, owner, intruder = await _users(fresh_db_url, "admin", "customer", "customer")
    async with (
        serving(fresh_db_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=20) as http,
        stream_client(address) as client,
    ):
        order = await _place(http, owner, await _product(http, admin))
        await _authenticate(client, intruder)
        refused = await _refused(client, [f"orders:{order['id']}"])
        assert order["id"] in refused["message"]
        # Also when asked together with a public topic: the whole subscription is refused.
        await _refused(client, ["products", f"orders:{order['id']}"])
        # A public topic as a sentinel: an event after the cancellation in the log.
        assert (await client.subscribe(["products"]))["topics"] == ["products"]
        await _cancel(http, owner, order["id"])
        sentinel = await _product(http, admin)
        received = await _events_until(client, "product.created", sentinel)
    # (the first product's creation too, if the hub was still behind it at subscribing)
    assert {m["topic"] for m in received} == {"products"}
    assert {m["event"]["aggregate_type"] for m in received} == {"product"}


async def test_anonymous_subscribers_may_follow_no_order_topic(fresh_db_url: str) -> None:
    admin, owner = await _users(fresh_db_url, "admin", "customer")
    async with (
        serving(fresh_db_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=20) as http,
        stream_client(address) as client,
    ):
        order = await _place(http, owner, await _product(http, admin))
        await _refused(client, [f"orders:{order['id']}"])
        await _refused(client, ["orders"])
        # catalog topics stay public, and the refused ones were not added
        assert (await client.subscribe(["products"]))["topics"] == ["products"]


async def test_only_staff_may_follow_every_order(fresh_db_url: str) -> None:
    admin, staff, first, second = await _users(
        fresh_db_url, "admin", "staff", "customer", "customer"
    )
    async with (
        serving(fresh_db_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=20) as http,
        stream_client(address) as customer_stream,
        stream_client(address) as staff_stream,
    ):
        await _authenticate(customer_stream, first)
        await _refused(customer_stream, ["orders"])
        await _authenticate(staff_stream, staff)
        assert (await staff_stream.subscribe(["orders"]))["topics"] == ["orders"]

        product_id = await _product(http, admin)
        mine = await _place(http, first, product_id)
        theirs = await _place(http, second, product_id)
        await _cancel(http, second, theirs["id"])
        received = await _events_until(staff_stream, "order.cancelled", theirs["id"])
    assert {m["topic"] for m in received} == {"orders"}
    assert [(m["event"]["type"], m["event"]["aggregate_id"]) for m in received] == [
        ("order.created", mine["id"]),
        ("order.created", theirs["id"]),
        ("order.cancelled", theirs["id"]),
    ]
    assert [m["event"]["payload"]["customer_id"] for m in received] == [
        str(first.id),
        str(second.id),
        str(second.id),
    ]


async def test_an_unknown_order_is_refused_exactly_like_someone_elses(fresh_db_url: str) -> None:
    admin, owner, other = await _users(fresh_db_url, "admin", "customer", "customer")
    missing = str(uuid.uuid4())
    async with (
        serving(fresh_db_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=20) as http,
        stream_client(address) as client,
    ):
        order = await _place(http, owner, await _product(http, admin))
        await _authenticate(client, other)
        someone_elses = await _refused(client, [f"orders:{order['id']}"])
        unknown = await _refused(client, [f"orders:{missing}"])
        for http_caller in (other, None):
            headers = http_caller.headers if http_caller else {}
            statuses = [
                (
                    await http.get(
                        "/api/v1/stream/sse", params={"topics": f"orders:{id_}"}, headers=headers
                    )
                ).status_code
                for id_ in (order["id"], missing)
            ]
            assert statuses == [403, 403]
    assert unknown["message"].replace(missing, "<id>") == someone_elses["message"].replace(
        order["id"], "<id>"
    )


async def test_sse_order_topics_are_for_the_owner_only(fresh_db_url: str) -> None:
    admin, owner, other = await _users(fresh_db_url, "admin", "customer", "customer")
    async with (
        serving(fresh_db_url) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=20) as http,
    ):
        order = await _place(http, owner, await _product(http, admin))
        params = {"topics": f"orders:{order['id']}"}
        for headers in (other.headers, {}):
            response = await http.get("/api/v1/stream/sse", params=params, headers=headers)
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "FORBIDDEN"
        async with http.stream(
            "GET", "/api/v1/stream/sse", params=params, headers=owner.headers
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            cancelled = await _cancel(http, owner, order["id"])
            # two events if the log was still behind the order's creation when it started
            events = await _sse_until(response, "order.cancelled")
    assert events[-1]["event"] == "order.cancelled"
    assert {e["data"]["topic"] for e in events} == {f"orders:{order['id']}"}
    assert events[-1]["data"]["event"]["payload"] == cancelled


async def test_authenticating_again_drops_topics_the_new_credential_may_not_follow(
    fresh_db_url: str,
) -> None:
    staff, customer = await _users(fresh_db_url, "staff", "customer")
    async with serving(fresh_db_url) as address, stream_client(address) as client:
        await client.send({"type": "auth", "token": staff.headers["Authorization"][7:]})
        assert (await client.receive())["type"] == "authenticated"
        await client.subscribe(["orders", "products"])
        await client.send({"type": "auth", "token": customer.headers["Authorization"][7:]})
        assert (await client.receive())["type"] == "authenticated"
        dropped = await client.receive()
        assert dropped["code"] == "FORBIDDEN_TOPIC"
        assert "orders" in dropped["message"]
        await client.send({"type": "subscribe", "topics": ["products"]})
        subscribed = await client.receive()
        assert subscribed["topics"] == ["products"]


async def test_an_open_stream_loses_what_its_credential_no_longer_allows(
    fresh_db_url: str,
) -> None:
    """The credential is checked again every heartbeat: a removed role drops its topics,
    and "log out everywhere" closes the stream."""
    (staff,) = await _users(fresh_db_url, "staff")
    async with (
        serving(fresh_db_url, stream_heartbeat_seconds=0.3) as address,
        stream_client(address) as client,
    ):
        await client.send({"type": "auth", "token": staff.headers["Authorization"][7:]})
        assert (await client.receive())["type"] == "authenticated"
        await client.subscribe(["orders", "products"])
        async with identity_runtime(fresh_db_url) as runtime:
            await runtime.db.reader.execute(
                "UPDATE identity.user_roles SET role = 'customer' WHERE user_id = $1",
                staff.id,
            )
        dropped = await _next_error(client)
        assert dropped["code"] == "FORBIDDEN_TOPIC"
        assert "orders" in dropped["message"]
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            ended = await http.post("/api/v1/auth/logout-all", headers=staff.headers)
            assert ended.status_code == 204
        code = await _close_code(client)
    assert code == 4001


async def _next_error(client: StreamClient) -> dict[str, Any]:
    while True:
        message = await client.receive()
        if message.get("type") == "error":
            return message


async def _close_code(client: StreamClient) -> int | None:
    try:
        while True:
            await client.receive()
    except Exception:  # the server closed the connection
        return client.connection.close_code


async def test_an_sse_stream_ends_when_its_credential_is_revoked(fresh_db_url: str) -> None:
    (staff,) = await _users(fresh_db_url, "staff")
    async with (
        serving(fresh_db_url, stream_heartbeat_seconds=0.3) as address,
        httpx.AsyncClient(base_url=f"http://{address}", timeout=10) as http,
        http.stream(
            "GET", "/api/v1/stream/sse", params={"topics": "orders"}, headers=staff.headers
        ) as stream,
    ):
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        assert (await anext(lines)).startswith("retry:")
        ended = await http.post("/api/v1/auth/logout-all", headers=staff.headers)
        assert ended.status_code == 204
        seen = [line async for line in lines]
    assert "event: unauthorized" in seen
