"""Consumer groups on the event log: at-least-once delivery, exactly-once effects in the
database, bounded retries with backoff, and a dead-letter table.

A consumer reads the log in position order from its own committed offset. For each event,
one transaction claims it in the inbox, runs the handler on that same connection and
advances the offset, so whatever the handler writes happens once, however often the event
is delivered. A handler that keeps failing is retried `max_attempts` times with exponential
backoff and jitter; then the event is dead-lettered (visible with `mercato events dlq list`)
and the consumer moves on. `mercato events dlq replay` asks for a dead letter to be
delivered again; the runner does so on its next pass. One runner per group is active
(advisory lock), the same way as the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from mercato.core.database import Database
from mercato.events import repository

log = structlog.get_logger("mercato.consumers")

Handler = Callable[[asyncpg.Connection, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Consumer:
    name: str
    handle: Handler
    types: frozenset[str] | None = None  # None: every event type
    max_attempts: int = 5
    backoff_seconds: float = 0.2
    max_backoff_seconds: float = 10.0

    def wants(self, event: dict[str, Any]) -> bool:
        return self.types is None or event["type"] in self.types


def _lock_key(name: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(f"mercato/consumer/{name}".encode(), digest_size=8).digest(),
        "big",
        signed=True,
    )


class ConsumerRunner:
    def __init__(
        self, db: Database, consumer: Consumer, *, batch: int = 100, idle: float = 0.2
    ) -> None:
        self._db = db
        self._consumer = consumer
        self._batch = batch
        self._idle = idle

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with self._db.transaction() as conn:
                    leader = await repository.try_lock(conn, _lock_key(self._consumer.name))
                    # The transaction lock only decides who works this pass.
                    busy = await self.pass_once() if leader else 0
            except Exception:
                log.exception("consumer_pass_failed", consumer=self._consumer.name)
                busy = 0
            # Straight on only while there is a backlog (a full batch): under a steady trickle
            # of events, passing again at once would spin, a transaction and a read of the log
            # every few milliseconds for a handful of events each.
            if busy < self._batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._idle)

    async def pass_once(self) -> int:
        """Deliver replays, then the next batch after the offset; returns events handled."""
        name = self._consumer.name
        handled = 0
        for dead in await repository.replays_requested(self._db.reader, name):
            event = await repository.logged_event(self._db.reader, dead["event_id"])
            if event is None:
                continue  # pruned from the log meanwhile: nothing left to replay
            try:
                await self._attempt(event, replay=True)
            except Exception as failure:
                async with self._db.transaction() as conn:
                    error = f"{type(failure).__name__}: {failure}"[:2000]
                    await repository.dead_letter(conn, name, event, attempts=1, error=error)
            handled += 1
        offset = await repository.consumer_offset(self._db.reader, name)
        skipped = 0  # the last of a run of events this consumer does not want
        for row in await repository.read_log(self._db.reader, after=offset, limit=self._batch):
            event = repository.event_json(row)
            handled += 1
            if not self._consumer.wants(event):
                # No transaction per unwanted event: the offset moves past the run once,
                # or with the next wanted event (offsets only grow). Re-reading such a
                # run after a crash is harmless.
                skipped = event["position"]
                continue
            skipped = 0
            await self._deliver(event)
        if skipped:
            async with self._db.transaction() as conn:
                await repository.set_consumer_offset(conn, name, skipped)
        return handled

    async def _deliver(self, event: dict[str, Any]) -> None:
        consumer = self._consumer
        error = ""
        for attempt in range(1, consumer.max_attempts + 1):
            try:
                if await self._attempt(event, replay=False):
                    return
            except Exception as failure:
                error = f"{type(failure).__name__}: {failure}"
                log.warning(
                    "consumer_attempt_failed",
                    consumer=consumer.name,
                    position=event["position"],
                    attempt=attempt,
                    error=error,
                )
            if attempt < consumer.max_attempts:
                delay = min(
                    consumer.backoff_seconds * 2 ** (attempt - 1), consumer.max_backoff_seconds
                )
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 (jitter)
        async with self._db.transaction() as conn:
            await repository.dead_letter(
                conn, consumer.name, event, attempts=consumer.max_attempts, error=error[:2000]
            )
            await repository.set_consumer_offset(conn, consumer.name, event["position"])
        log.error(
            "consumer_dead_lettered",
            consumer=consumer.name,
            position=event["position"],
            error=error,
        )

    async def handle_event(self, event: dict[str, Any]) -> None:
        """Inbox claim and handler in one transaction, no offset: for a broker-fed runner."""
        async with self._db.transaction() as conn:
            if await repository.claim_for_consumer(conn, self._consumer.name, event["event_id"]):
                await self._consumer.handle(conn, event)

    async def record_dead_letter(self, event: dict[str, Any], *, attempts: int, error: str) -> None:
        async with self._db.transaction() as conn:
            await repository.dead_letter(
                conn, self._consumer.name, event, attempts=attempts, error=error[:2000]
            )
        log.error(
            "consumer_dead_lettered",
            consumer=self._consumer.name,
            position=event["position"],
            error=error,
        )

    async def _attempt(self, event: dict[str, Any], *, replay: bool) -> bool:
        """One transaction: inbox claim, handler, offset (or replay mark); raises on failure."""
        name = self._consumer.name
        async with self._db.transaction() as conn:
            if await repository.claim_for_consumer(conn, name, event["event_id"]):
                await self._consumer.handle(conn, event)
            if replay:
                await repository.mark_replayed(conn, name, event["event_id"])
            else:
                await repository.set_consumer_offset(conn, name, event["position"])
        return True
