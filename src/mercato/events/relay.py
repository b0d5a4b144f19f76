"""The relay: moves committed outbox events into the log, then hands them to publishers.

One relay is active at a time: it holds a PostgreSQL session advisory lock on its own
connection. If its process dies, the connection drops, the lock is released, and a standby
relay (another worker or API instance) takes over within `standby_interval`.

Delivery is at least once: events are published from `published_position`, which advances
only after every publisher accepted them, so a crash between publishing and recording it
publishes the same events again. Consumers deduplicate through the inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, Protocol

import asyncpg
import structlog

from mercato.core.config import Settings
from mercato.core.database import Database, asyncpg_dsn
from mercato.events import repository
from mercato.events.rabbitmq import RabbitPublisher

log = structlog.get_logger("mercato.relay")

# Any number that no other advisory lock in Mercato uses: "mercato/events relay".
RELAY_LOCK = 0x6D65726361746F02


class Publisher(Protocol):
    async def publish(self, events: Sequence[dict[str, Any]]) -> None: ...


class Relay:
    def __init__(
        self,
        database_url: str,
        *,
        publishers: Sequence[Publisher] = (),
        batch_size: int = 500,
        idle_interval: float = 0.01,
        max_idle_interval: float = 0.2,
        standby_interval: float = 1.0,
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._publishers = list(publishers)
        self._batch_size = batch_size
        self._idle_interval = idle_interval
        self._max_idle_interval = max(idle_interval, max_idle_interval)
        self._standby_interval = standby_interval
        self.active = asyncio.Event()
        # (last assigned, last published), read when this relay becomes active.
        self._positions: tuple[int, int] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set, surviving database restarts and lost leadership."""
        while not stop.is_set():
            try:
                await self._run_connected(stop)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("relay_connection_lost", error=str(error))
            except Exception:
                # A failing publisher must not stop the relay for good: what was not
                # published is retried from published_position on the next pass.
                log.exception("relay_failed")
            self.active.clear()
            await _sleep_unless(stop, self._standby_interval)

    async def _run_connected(self, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(self._dsn)
        try:
            await Database.init_connection(conn)
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK):
                if await _sleep_unless(stop, self._standby_interval):
                    return
            self.active.set()
            self._positions = None
            log.info("relay_active")
            # Poll quickly while events flow, then back off while the outbox stays empty:
            # an idle relay costs a few cheap queries a second, not fifty.
            interval = self._idle_interval
            while not stop.is_set():
                moved = await self.step(conn)
                if moved >= self._batch_size:
                    continue
                interval = (
                    self._idle_interval if moved else min(interval * 2, self._max_idle_interval)
                )
                await _sleep_unless(stop, interval)
        finally:
            self.active.clear()
            with contextlib.suppress(Exception):
                await conn.close()

    async def step(self, conn: asyncpg.Connection) -> int:
        """One batch: move, then publish everything not yet published. Returns events moved."""
        if self._positions is None:
            self._positions = await repository.positions(conn)
        last, published = self._positions
        if published == last and not await repository.outbox_has_events(conn):
            return 0
        if not self._publishers:
            # Nothing to hand the events to: moved is published, in the same transaction
            # (two round trips fewer per batch on a process that may be busy streaming).
            async with conn.transaction():
                new_last = await repository.move_outbox_to_log(
                    conn, limit=self._batch_size, published=True
                )
                if published < last:  # left by a relay that had publishers
                    await repository.mark_published(conn, new_last)
            self._positions = (new_last, new_last)
            return new_last - last
        async with conn.transaction():
            new_last = await repository.move_outbox_to_log(conn, limit=self._batch_size)
        self._positions = (new_last, published)
        while published < new_last:
            events = await repository.read_log(
                conn, after=published, up_to=new_last, limit=self._batch_size
            )
            batch = [repository.event_json(row) for row in events]
            for publisher in self._publishers:
                await publisher.publish(batch)
            published = batch[-1]["position"]
            await repository.mark_published(conn, published)
            self._positions = (new_last, published)
        return new_last - last


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep, waking early when `stop` is set; True when stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


def relay_for(settings: Settings, database_url: str) -> Relay:
    """The relay a process runs: publishing to RabbitMQ when `AMQP_URL` is set."""
    publishers: list[Publisher] = []
    if settings.amqp_url is not None:
        publishers.append(RabbitPublisher(settings.amqp_url.get_secret_value()))
    return Relay(database_url, publishers=publishers)
