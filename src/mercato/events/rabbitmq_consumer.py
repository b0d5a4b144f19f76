"""The same consumer groups, fed from RabbitMQ instead of reading the log.

Each group gets a durable quorum queue `mercato.<group>` bound to the event types it wants.
A message is acknowledged only after its transaction (inbox claim + handler) committed, so
a crash redelivers it and the inbox makes the redelivery harmless. A failing handler is
retried (the message is returned to the queue after an exponential backoff with jitter);
on its last attempt the event is recorded in `events.dead_letters`, where `mercato events
dlq list|replay` sees it like any other. The queue also has a delivery limit and a
dead-letter exchange, so a message that crashes the process over and over, or cannot be
parsed, ends in `mercato.<group>.dlq` instead of looping.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import aio_pika
import orjson
import structlog
from aio_pika.abc import AbstractIncomingMessage

from mercato.core.database import Database
from mercato.events.consumers import Consumer, ConsumerRunner
from mercato.events.rabbitmq import EXCHANGE

log = structlog.get_logger("mercato.consumers")


class RabbitConsumerRunner:
    def __init__(
        self,
        amqp_url: str,
        db: Database,
        consumer: Consumer,
        *,
        exchange: str = EXCHANGE,
        prefetch: int = 50,
    ) -> None:
        self._url = amqp_url
        self._consumer = consumer
        self._runner = ConsumerRunner(db, consumer)
        self._exchange = exchange
        self._prefetch = prefetch
        self.queue_name = f"mercato.{consumer.name}"
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self._consume(stop)
            except Exception as error:
                log.warning(
                    "rabbitmq_consumer_interrupted", consumer=self._consumer.name, error=str(error)
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

    async def _consume(self, stop: asyncio.Event) -> None:
        connection = await aio_pika.connect_robust(self._url)
        async with connection:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=self._prefetch)
            exchange = await channel.declare_exchange(
                self._exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            dead_letters = await channel.declare_exchange(
                f"{self.queue_name}.dlx", aio_pika.ExchangeType.DIRECT, durable=True
            )
            dlq = await channel.declare_queue(
                f"{self.queue_name}.dlq", durable=True, arguments={"x-queue-type": "quorum"}
            )
            await dlq.bind(dead_letters, routing_key=self.queue_name)
            queue = await channel.declare_queue(
                self.queue_name,
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    # Well above max_attempts: handler failures are recorded by us first;
                    # the broker's limit catches only crashes and unparseable messages.
                    "x-delivery-limit": self._consumer.max_attempts + 5,
                    "x-dead-letter-exchange": f"{self.queue_name}.dlx",
                    "x-dead-letter-routing-key": self.queue_name,
                },
            )
            for key in sorted(self._consumer.types or {"#"}):
                await queue.bind(exchange, routing_key=key)
            tag = await queue.consume(self._handle)
            self.ready.set()
            try:
                await stop.wait()
            finally:
                self.ready.clear()
                with contextlib.suppress(Exception):
                    await queue.cancel(tag)

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            event = orjson.loads(message.body)
        except orjson.JSONDecodeError:
            await message.reject(requeue=False)  # to the dead-letter queue
            return
        consumer = self._consumer
        delivery_count = message.headers.get("x-delivery-count", 0)
        attempt = (delivery_count if isinstance(delivery_count, int) else 0) + 1
        try:
            await self._runner.handle_event(event)
        except Exception as failure:
            error = f"{type(failure).__name__}: {failure}"
            if attempt >= consumer.max_attempts:
                await self._runner.record_dead_letter(event, attempts=attempt, error=error)
                await message.ack()
                return
            log.warning(
                "consumer_attempt_failed",
                consumer=consumer.name,
                position=event.get("position"),
                attempt=attempt,
                error=error,
            )
            delay = min(consumer.backoff_seconds * 2 ** (attempt - 1), consumer.max_backoff_seconds)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 (jitter)
            await message.nack(requeue=True)
            return
        await message.ack()
