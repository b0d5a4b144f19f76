"""Publishing the event log to RabbitMQ (when `AMQP_URL` is set).

Events go to a durable topic exchange, routed by event type (`product.updated`), as
persistent messages whose id is the event id and whose headers carry the stream position.
The channel uses publisher confirms: `publish` returns only once the broker has taken
responsibility for every message of the batch, and the relay records the batch as
published only then. While the broker is down, `publish` raises, the relay retries, and
events wait in the log: nothing is lost, and they go out in position order when it is back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aio_pika
import orjson
import structlog
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection

log = structlog.get_logger("mercato.rabbitmq")

EXCHANGE = "mercato.events"


class RabbitPublisher:
    def __init__(self, amqp_url: str, *, exchange: str = EXCHANGE, timeout: float = 10.0) -> None:
        self._url = amqp_url
        self._exchange_name = exchange
        self._timeout = timeout
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None

    async def _ready(self) -> AbstractExchange:
        if self._exchange is not None and self._channel is not None and not self._channel.is_closed:
            return self._exchange
        await self.close()
        self._connection = await aio_pika.connect_robust(self._url, timeout=self._timeout)
        self._channel = await self._connection.channel(publisher_confirms=True)
        self._exchange = await self._channel.declare_exchange(
            self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        return self._exchange

    async def publish(self, events: Sequence[dict[str, Any]]) -> None:
        try:
            exchange = await self._ready()
            for event in events:
                message = aio_pika.Message(
                    body=orjson.dumps(event, default=str),
                    content_type="application/json",
                    message_id=event["event_id"],
                    type=event["type"],
                    headers={
                        "position": event["position"],
                        "schema_version": event["schema_version"],
                    },
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                # With publisher confirms, this returns once the broker has the message.
                await exchange.publish(message, routing_key=event["type"], timeout=self._timeout)
        except Exception:
            await self.close()  # reconnect cleanly on the next attempt
            raise

    async def close(self) -> None:
        connection, self._connection, self._channel, self._exchange = (
            self._connection,
            None,
            None,
            None,
        )
        if connection is not None and not connection.is_closed:
            try:
                await connection.close()
            except Exception as error:  # closing a dead connection may fail; nothing to do
                log.debug("rabbitmq_close_failed", error=str(error))
