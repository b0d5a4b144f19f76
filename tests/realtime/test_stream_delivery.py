"""Batched delivery (`"batch": true`), and live sessions that fall back or move their cursor."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from tests.realtime.conftest import StreamClient, serving, stream_client


async def _batches(client: StreamClient, count: int) -> list[list[dict[str, Any]]]:
    """`events` messages until they hold `count` events; nothing but heartbeats between."""
    batches: list[list[dict[str, Any]]] = []
    while sum(len(b) for b in batches) < count:
        message = await client.receive(timeout=30)
        assert message["type"] in ("events", "heartbeat"), message
        if message["type"] == "events":
            assert all(item["type"] == "event" for item in message["events"])
            batches.append(message["events"])
    return batches


def _positions(events: list[dict[str, Any]]) -> list[int]:
    return [e["position"] for e in events]


async def test_batched_delivery_keeps_order_without_gap_or_duplicate(
    fresh_db_url: str, write_events: Callable[..., Any]
) -> None:
    async with serving(fresh_db_url) as address:
        await write_events(30)  # before anyone connects: replayed in batches
        async with stream_client(address) as client:
            await client.send(
                {"type": "subscribe", "topics": ["products"], "after": 0, "batch": True}
            )
            assert (await client.receive())["type"] == "subscribed"
            replayed = await _batches(client, 30)
            await write_events(10)  # live, pushed by the hub
            live = await _batches(client, 10)
    every = [event for batch in replayed + live for event in batch]
    assert _positions(every) == list(range(1, 41))
    assert len({e["event"]["event_id"] for e in every}) == 40
    # The replay was queued at once, so the writer found several events waiting.
    assert len(replayed) < 30, [len(batch) for batch in replayed]


async def test_resuming_from_the_middle_of_a_batch_continues_at_the_seam(
    fresh_db_url: str, write_events: Callable[..., Any]
) -> None:
    async with serving(fresh_db_url) as address:
        await write_events(12)
        async with stream_client(address) as client:
            await client.send(
                {"type": "subscribe", "topics": ["products"], "after": 0, "batch": True}
            )
            await client.receive()
            batch = (await _batches(client, 1))[0]
        assert len(batch) > 1
        handled = batch[len(batch) // 2]["position"]  # the client stopped mid-batch
        async with stream_client(address) as client:
            await client.send(
                {"type": "subscribe", "topics": ["products"], "after": handled, "batch": True}
            )
            await client.receive()
            rest = [e for b in await _batches(client, 12 - handled) for e in b]
    assert _positions(rest) == list(range(handled + 1, 13))


async def test_batching_can_be_turned_off_again(
    fresh_db_url: str, write_events: Callable[..., Any]
) -> None:
    async with serving(fresh_db_url) as address, stream_client(address) as client:
        await client.send({"type": "subscribe", "topics": ["products"], "batch": True})
        start = (await client.receive())["position"]
        await client.send({"type": "subscribe", "topics": ["products"], "batch": False})
        await client.receive()
        await write_events(3)
        events = await client.events(3)
    assert _positions(events) == [start + 1, start + 2, start + 3]


async def test_resubscribing_from_an_earlier_position_while_live_replays_from_there(
    fresh_db_url: str, write_events: Callable[..., Any]
) -> None:
    async with serving(fresh_db_url) as address, stream_client(address) as client:
        start = (await client.subscribe(["products"]))["position"]
        await write_events(4)
        first = await client.events(4)
        await client.subscribe(["products"], after=first[0]["position"])
        replayed = await client.events(3)
        await write_events(2)
        live = await client.events(2)
    assert _positions(first) == list(range(start + 1, start + 5))
    assert _positions(replayed + live) == list(range(start + 2, start + 7))


async def test_heartbeats_report_positions_passed_without_a_matching_event(
    fresh_db_url: str, write_events: Callable[..., Any]
) -> None:
    """A live session examines every event, matching or not, so a quiet subscription's
    heartbeat tells the client it can resume past events it was never sent."""
    watched = str(uuid.uuid4())
    async with (
        serving(fresh_db_url, stream_heartbeat_seconds=0.2) as address,
        stream_client(address) as client,
    ):
        start = (await client.subscribe([f"products:{watched}"]))["position"]
        await write_events(3)  # other products
        while True:
            message = await client.receive()
            assert message["type"] == "heartbeat", message
            if message["position"] == start + 3:
                break
            assert start <= message["position"] < start + 3
        await write_events(1, aggregate_id=watched)
        (event,) = await client.events(1)
    assert event["position"] == start + 4
