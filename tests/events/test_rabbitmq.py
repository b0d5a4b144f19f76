"""Publishing to a real RabbitMQ: confirmed, in position order, and surviving an outage."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import uuid
from typing import Any

import aio_pika
import asyncpg
import orjson
import pytest

from mercato.core.database import Database
from mercato.events.consumers import Consumer
from mercato.events.rabbitmq import RabbitPublisher
from mercato.events.rabbitmq_consumer import RabbitConsumerRunner
from mercato.events.relay import Relay
from tests.factories import record_product_events

AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _broker_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def amqp_url() -> str:
    if not _broker_up():
        if os.environ.get("CI") == "true":
            pytest.fail("RabbitMQ must run under CI (see .ci/run)")
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
    return AMQP_URL


async def _queue(
    url: str, exchange: str
) -> tuple[aio_pika.abc.AbstractRobustConnection, aio_pika.abc.AbstractQueue]:
    connection = await aio_pika.connect_robust(url)
    channel = await connection.channel()
    exchange_ = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(
        f"test-{exchange}", durable=True, arguments={"x-queue-type": "quorum"}
    )
    await queue.bind(exchange_, routing_key="#")
    return connection, queue


async def _drain(
    queue: aio_pika.abc.AbstractQueue, expected: int, timeout: float = 60
) -> list[dict[str, Any]]:
    received: dict[str, dict[str, Any]] = {}
    order: list[int] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(received) < expected and asyncio.get_running_loop().time() < deadline:
        message = await queue.get(fail=False, timeout=5)
        if message is None:
            await asyncio.sleep(0.1)
            continue
        await message.ack()
        event = orjson.loads(message.body)
        assert message.message_id == event["event_id"]
        assert message.headers["position"] == event["position"]
        order.append(event["position"])
        received.setdefault(event["event_id"], event)  # at least once: ignore redeliveries
    assert order == sorted(order), "out of position order"
    return sorted(received.values(), key=lambda e: e["position"])


async def _run_relay(relay: Relay, stop: asyncio.Event) -> asyncio.Task[None]:
    return asyncio.create_task(relay.run(stop))


async def test_events_are_published_in_position_order(pooled_db: Database, amqp_url: str) -> None:
    exchange = f"mercato.test.{uuid.uuid4().hex[:8]}"
    connection, queue = await _queue(amqp_url, exchange)
    publisher = RabbitPublisher(amqp_url, exchange=exchange)
    stop = asyncio.Event()
    task = await _run_relay(Relay(pooled_db.url, publishers=[publisher], idle_interval=0.005), stop)
    try:
        for _ in range(5):
            await record_product_events(pooled_db, 20)
        events = await _drain(queue, 100)
    finally:
        stop.set()
        await task
        await publisher.close()
        await queue.delete(if_unused=False, if_empty=False)
        await connection.close()
    assert [e["position"] for e in events] == list(range(1, 101))


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


@pytest.mark.slow
async def test_a_broker_outage_holds_events_and_delivers_them_in_order_after(
    pooled_db: Database, amqp_url: str
) -> None:
    exchange = f"mercato.test.{uuid.uuid4().hex[:8]}"
    connection, queue = await _queue(amqp_url, exchange)
    await connection.close()
    publisher = RabbitPublisher(amqp_url, exchange=exchange, timeout=3)
    stop = asyncio.Event()
    relay = Relay(pooled_db.url, publishers=[publisher], idle_interval=0.005, standby_interval=0.5)
    task = await _run_relay(relay, stop)
    try:
        await record_product_events(pooled_db, 10)
        await asyncio.sleep(1)
        await asyncio.to_thread(_rabbitmqctl, "stop_app")
        try:
            for _ in range(4):  # writes go on while the broker is down
                await record_product_events(pooled_db, 10)
                await asyncio.sleep(0.3)
            published = await pooled_db.reader.fetchval(
                "SELECT published_position FROM events.relay_state"
            )
            assert published < 50, "events cannot have been published to a stopped broker"
        finally:
            await asyncio.to_thread(_rabbitmqctl, "start_app")
        connection, queue = await _queue(amqp_url, exchange)
        events = await _drain(queue, 50, timeout=90)
    finally:
        stop.set()
        await task
        await publisher.close()
        await queue.delete(if_unused=False, if_empty=False)
        await connection.close()
    assert [e["position"] for e in events] == list(range(1, 51))


async def test_a_consumer_group_on_the_broker_retries_dead_letters_and_applies_once(
    pooled_db: Database, amqp_url: str
) -> None:
    exchange = f"mercato.test.{uuid.uuid4().hex[:8]}"
    await pooled_db.reader.execute(
        "CREATE TABLE public.effects (event_id uuid PRIMARY KEY, position bigint)"
    )

    async def record(conn: asyncpg.Connection, event: dict[str, Any]) -> None:
        if event["position"] == 3:
            raise ValueError("poison")
        await conn.execute(
            "INSERT INTO public.effects VALUES ($1::uuid, $2)", event["event_id"], event["position"]
        )

    group = Consumer(f"test-{uuid.uuid4().hex[:8]}", record, max_attempts=3, backoff_seconds=0.01)
    consumer = RabbitConsumerRunner(amqp_url, pooled_db, group, exchange=exchange)
    publisher = RabbitPublisher(amqp_url, exchange=exchange)
    stop = asyncio.Event()
    consuming = asyncio.create_task(consumer.run(stop))
    await asyncio.wait_for(consumer.ready.wait(), 20)
    relaying = asyncio.create_task(
        Relay(pooled_db.url, publishers=[publisher], idle_interval=0.005).run(stop)
    )
    try:
        await record_product_events(pooled_db, 5)
        for _ in range(200):
            dead = await pooled_db.reader.fetchval("SELECT count(*) FROM events.dead_letters")
            done = await pooled_db.reader.fetchval("SELECT count(*) FROM public.effects")
            if dead == 1 and done == 4:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(consuming, relaying)
        await publisher.close()
    positions = [
        r["position"]
        for r in await pooled_db.reader.fetch(
            "SELECT position FROM public.effects ORDER BY position"
        )
    ]
    assert positions == [1, 2, 4, 5]
    dead_letter = await pooled_db.reader.fetchrow(
        "SELECT position, attempts, error FROM events.dead_letters"
    )
    assert (dead_letter["position"], dead_letter["attempts"], dead_letter["error"]) == (
        3,
        3,
        "ValueError: poison",
    )
    connection = await aio_pika.connect_robust(amqp_url)
    async with connection:
        channel = await connection.channel()
        for name in (consumer.queue_name, f"{consumer.queue_name}.dlq"):
            await channel.queue_delete(name)
