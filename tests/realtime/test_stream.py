"""Ordered, resumable streams over a real WebSocket, from a real server and database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import websockets

from mercato.realtime import protocol
from tests.factories import product_payload, staff_headers
from tests.realtime.conftest import StalledClient, StreamClient, serving, stream_client


def _positions(messages: list[dict[str, Any]]) -> list[int]:
    return [m["position"] for m in messages]


async def test_api_changes_arrive_in_order_with_their_positions(fresh_db_url: str) -> None:
    admin_headers = await staff_headers(fresh_db_url)
    async with serving(fresh_db_url) as address, stream_client(address) as client:
        await client.subscribe(["products"])
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            created = [
                (
                    await http.post(
                        "/api/v1/products", json=product_payload(), headers=admin_headers
                    )
                ).json()["data"]
                for _ in range(3)
            ]
        events = await client.events(3)
    assert [e["event"]["type"] for e in events] == ["product.created"] * 3
    assert [e["event"]["payload"]["id"] for e in events] == [p["id"] for p in created]
    assert _positions(events) == sorted(_positions(events))
    assert all(e["topic"] == "products" for e in events)


async def test_resuming_after_a_position_continues_exactly_at_the_seam(
    fresh_db_url: str, write_events: Callable[..., Any]
) -> None:
    async with serving(fresh_db_url) as address:
        async with stream_client(address) as client:
            start = (await client.subscribe(["products"]))["position"]
            await write_events(5)
            first = await client.events(5)
        assert _positions(first) == list(range(start + 1, start + 6))

        await write_events(7)  # while disconnected
        async with stream_client(address) as client:
            await client.subscribe(["products"], after=first[-1]["position"])
            replayed = await client.events(7)
            await write_events(2)  # live again, after the replay
            live = await client.events(2)
    assert _positions(replayed + live) == list(range(start + 6, start + 15))


async def test_a_topic_filter_and_a_specific_aggregate(
    fresh_db_url: str, write_events: Callable[..., Any]
) -> None:
    aggregate = "11111111-2222-3333-4444-555555555555"
    async with serving(fresh_db_url) as address, stream_client(address) as client:
        await client.subscribe([f"products:{aggregate}"])
        await write_events(3)
        await write_events(2, aggregate_id=aggregate)
        events = await client.events(2)
    assert {e["event"]["aggregate_id"] for e in events} == {aggregate}
    assert {e["topic"] for e in events} == {f"products:{aggregate}"}


async def test_a_slow_consumer_is_closed_and_resumes_while_others_are_unaffected(
    fresh_db_url: str, write_events: Callable[..., Any]
) -> None:
    count = 400  # 8 MB: far more than the socket buffers and the server's buffer hold
    async with serving(fresh_db_url, stream_buffer_messages=50, stream_stall_seconds=1) as address:
        slow = StalledClient(address)
        await slow.connect()
        async with stream_client(address) as fast:
            start = (await fast.subscribe(["products"]))["position"]
            await slow.send({"type": "subscribe", "topics": ["products"], "after": start})
            reading = asyncio.create_task(fast.events(count, timeout=60))
            await write_events(count, payload_bytes=20_000)
            received = await reading
        assert _positions(received) == list(range(start + 1, start + count + 1))
        await asyncio.sleep(2.5)  # longer than the stall limit, reading nothing
        messages, close_code = await slow.read_until_closed()
        assert close_code == protocol.CLOSE_SLOW_CONSUMER
        slow_got = [m for m in messages if m["type"] == "event"]
        assert len(slow_got) < count
        assert _positions(slow_got) == list(range(start + 1, start + len(slow_got) + 1))
        resume_from = slow_got[-1]["position"] if slow_got else start
        async with stream_client(address) as again:
            await again.subscribe(["products"], after=resume_from)
            rest = await again.events(start + count - resume_from, timeout=60)
    assert _positions(slow_got + rest) == list(range(start + 1, start + count + 1))


async def _read_until_closed(client: StreamClient) -> tuple[list[dict[str, Any]], int | None]:
    events: list[dict[str, Any]] = []
    try:
        while True:
            message = await client.receive(timeout=15)
            if message["type"] == "event":
                events.append(message)
    except websockets.ConnectionClosed as closed:
        return events, closed.rcvd.code if closed.rcvd else None


async def test_two_instances_deliver_the_same_sequence(
    fresh_db_url: str, write_events: Callable[..., Any]
) -> None:
    async with (
        serving(fresh_db_url) as first,
        serving(fresh_db_url) as second,
        stream_client(first) as a,
        stream_client(second) as b,
    ):
        start_a = (await a.subscribe(["products"], after=0))["position"]
        start_b = (await b.subscribe(["products"], after=0))["position"]
        assert start_a == start_b == 0
        for _ in range(5):
            await write_events(10)
        from_a, from_b = await asyncio.gather(a.events(50), b.events(50))
    assert _positions(from_a) == _positions(from_b) == list(range(1, 51))
    assert [m["event"]["event_id"] for m in from_a] == [m["event"]["event_id"] for m in from_b]


async def test_bad_messages_get_errors_and_the_connection_survives(fresh_db_url: str) -> None:
    async with serving(fresh_db_url) as address, stream_client(address) as client:
        await client.connection.send("{not json")
        assert (await client.receive())["code"] == "INVALID_MESSAGE"
        await client.send({"type": "subscribe", "topics": ["secrets"]})
        assert (await client.receive())["code"] == "UNKNOWN_TOPIC"
        await client.send({"type": "subscribe", "topics": ["products"], "extra": 1})
        assert (await client.receive())["code"] == "INVALID_MESSAGE"
        await client.connection.send("x" * 10_000)
        assert (await client.receive())["code"] == "MESSAGE_TOO_LARGE"
        await client.send({"type": "ping"})
        assert (await client.receive())["type"] == "pong"


async def test_a_wrong_credential_closes_the_stream(fresh_db_url: str) -> None:
    admin_headers = await staff_headers(fresh_db_url)
    async with serving(fresh_db_url) as address:
        async with stream_client(address) as client:
            await client.send({"type": "auth", "token": admin_headers["Authorization"][7:]})
            assert (await client.receive())["type"] == "authenticated"
        async with stream_client(address) as client:
            await client.send({"type": "auth", "token": "wrong"})
            _, close_code = await _read_until_closed(client)
    assert close_code == protocol.CLOSE_UNAUTHENTICATED


async def test_resuming_from_before_the_retained_log_asks_for_a_resync(
    fresh_db_url: str, write_events: Callable[..., Any]
) -> None:
    async with serving(fresh_db_url) as address:
        async with stream_client(address) as client:
            await client.subscribe(["products"], after=0)
            await write_events(5)
            await client.events(5)
        conn = await asyncpg.connect(fresh_db_url)
        await conn.execute("DELETE FROM events.event_log WHERE position <= 3")  # as retention would
        await conn.close()
        async with stream_client(address) as client:
            await client.send({"type": "subscribe", "topics": ["products"], "after": 1})
            _, close_code = await _read_until_closed(client)
            assert close_code == protocol.CLOSE_RESYNC_REQUIRED
        async with stream_client(address) as client:
            await client.subscribe(["products"], after=3)
            assert _positions(await client.events(2)) == [4, 5]


async def test_too_many_connections_from_one_client_are_refused(fresh_db_url: str) -> None:
    async with (
        serving(fresh_db_url, stream_max_per_client=2) as address,
        stream_client(address) as one,
        stream_client(address) as two,
    ):
        await one.send({"type": "ping"})
        await two.send({"type": "ping"})
        async with stream_client(address) as three:
            _, close_code = await _read_until_closed(three)
    assert close_code == protocol.CLOSE_TOO_MANY_CONNECTIONS


async def test_shutdown_tells_clients_to_reconnect(fresh_db_url: str) -> None:
    server = contextlib.AsyncExitStack()
    address = await server.enter_async_context(serving(fresh_db_url))
    async with stream_client(address) as client:
        await client.subscribe(["products"])
        await server.aclose()  # the server stops while the client is connected
        _, close_code = await _read_until_closed(client)
    assert close_code == 1012


async def test_anonymous_subscribers_see_hidden_products_only_as_tombstones(
    fresh_db_url: str,
) -> None:
    admin_headers = await staff_headers(fresh_db_url)
    async with (
        serving(fresh_db_url) as address,
        stream_client(address) as anonymous,
        stream_client(address) as staff,
    ):
        await staff.send({"type": "auth", "token": admin_headers["Authorization"][7:]})
        await anonymous.subscribe(["products"])
        await staff.subscribe(["products"])
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            hidden = (
                await http.post(
                    "/api/v1/products", json=product_payload(is_active=False), headers=admin_headers
                )
            ).json()["data"]
            shown = (
                await http.post("/api/v1/products", json=product_payload(), headers=admin_headers)
            ).json()["data"]
        seen_anonymously = await anonymous.events(2)
        seen_by_staff = await staff.events(2)
    assert seen_anonymously[0]["event"]["payload"] == {"id": hidden["id"], "visible": False}
    assert seen_anonymously[1]["event"]["payload"] == shown
    assert seen_by_staff[0]["event"]["payload"] == hidden
