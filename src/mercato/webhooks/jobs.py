"""The delivery job: every subscription follows the event log in position order.

A pass leases due subscriptions that are behind the log (`FOR UPDATE SKIP LOCKED` in a
short transaction, so several workers share the work and never deliver one subscription
twice at a time) and serves each in its own task, up to `webhook_concurrency` at once.
Serving one reads the events after its cursor through the events facade, skips the types
it does not want, and sends the first it wants with no transaction open; one more short
transaction records the attempt and moves the cursor (2xx), schedules a retry (backoff),
pauses the subscription (retries exhausted: the event is dead-lettered), or disables it
(410). A failing event holds back only the later events of its own subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from mercato.core.config import Settings
from mercato.core.crypto import DataKeyRing
from mercato.core.database import Database
from mercato.events import last_position, read_events
from mercato.webhooks import repository, rules, service
from mercato.webhooks.rules import Verdict
from mercato.webhooks.sender import Attempt, Sender

log = structlog.get_logger("mercato.webhooks")

READ_BATCH = 100
EVENTS_PER_TURN = 100  # then the subscription goes back in the queue: fair to the others
PRUNE_EVERY = timedelta(hours=1)
PRUNE_BATCH = 5_000


class DeliveryJob:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        idle: float = 0.5,
    ) -> None:
        assert settings.data_keys is not None, "settings.with_local_secrets() fills it"
        self._db = db
        self._settings = settings
        self._ring = DataKeyRing.parse(settings.data_keys.get_secret_value())
        self._idle = idle
        self._keep_attempts = timedelta(days=settings.webhook_log_days)
        # A lease outlives the longest turn step (an attempt is bounded by twice the
        # timeout): while it holds, no other worker takes the subscription.
        self._lease = timedelta(seconds=max(60.0, 4 * settings.webhook_timeout_seconds))
        self._slots = settings.webhook_concurrency

    async def run(self, stop: asyncio.Event) -> None:
        sender = Sender.from_settings(self._settings)
        tasks: set[asyncio.Task[None]] = set()
        freed = asyncio.Event()
        pruned_at = datetime.min.replace(tzinfo=UTC)

        def finished(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            freed.set()

        try:
            while not stop.is_set():
                freed.clear()
                claimed: list[Any] = []
                try:
                    if len(tasks) < self._slots:
                        claimed = await self._claim(self._slots - len(tasks))
                    if datetime.now(UTC) - pruned_at > PRUNE_EVERY:
                        pruned_at = datetime.now(UTC)
                        await self._prune()
                except Exception:
                    log.exception("webhook_pass_failed")
                for row in claimed:
                    task = asyncio.create_task(self._serve(sender, row, stop))
                    tasks.add(task)
                    task.add_done_callback(finished)
                if len(claimed) and len(tasks) < self._slots:
                    continue  # more may be due
                await _first_of(stop, freed, seconds=self._idle)
        finally:
            # In-flight attempts finish (each is bounded) and record their outcome.
            await asyncio.gather(*tasks, return_exceptions=True)
            await sender.close()

    async def _claim(self, limit: int) -> list[Any]:
        last = await last_position(self._db.reader)
        async with self._db.transaction() as conn:
            return await repository.claim_due(
                conn, last_position=last, limit=limit, lease=self._lease
            )

    async def _prune(self) -> None:
        """Forget attempts older than `webhook_log_days`, in batches of short transactions."""
        before = datetime.now(UTC) - self._keep_attempts
        pruned = 0
        while True:
            async with self._db.transaction() as conn:
                batch = await repository.prune_deliveries(conn, before=before, limit=PRUNE_BATCH)
            pruned += batch
            if batch < PRUNE_BATCH:
                break
        if pruned:
            log.info("webhook_attempts_pruned", count=pruned)

    async def _serve(self, sender: Sender, row: Any, stop: asyncio.Event) -> None:
        try:
            turn = _Turn(self._db, self._settings, sender, row, ring=self._ring, lease=self._lease)
            if await turn.run(stop):
                async with self._db.transaction() as conn:
                    await repository.release(conn, row["id"], row["claim_token"])
        except Exception:
            # The lease runs out and another pass takes the subscription up again.
            log.exception("webhook_delivery_failed", subscription_id=str(row["id"]))


class _Turn:
    """One leased subscription: its events in order until one fails, the log ends, or the
    turn's share is used up."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        sender: Sender,
        row: Any,
        *,
        ring: DataKeyRing,
        lease: timedelta,
    ) -> None:
        self._db = db
        self._settings = settings
        self._sender = sender
        self._lease = lease
        self._row = row
        self._id: uuid.UUID = row["id"]
        self._token: uuid.UUID = row["claim_token"]
        self._cursor: int = row["delivered_position"]
        self._failures: int = row["failures"]
        self._secrets = service.secrets_in_use(ring, row)

    async def run(self, stop: asyncio.Event) -> bool:
        """True when the lease is still ours to give back."""
        sent = 0
        while sent < EVENTS_PER_TURN and not stop.is_set():
            events = await read_events(self._db.reader, after=self._cursor, limit=READ_BATCH)
            if not events:
                return True
            if events[0]["position"] > self._cursor + 1:
                log.warning(
                    "webhook_events_missed",
                    subscription_id=str(self._id),
                    after=self._cursor,
                    resumed_at=events[0]["position"],
                )
            head = next(
                (e for e in events if rules.wants(self._row["event_types"], e["type"])), None
            )
            if head is None:
                if not await self._advance(events[-1]["position"]):
                    return False
                continue
            if not await self._attempt(head):
                return False
            sent += 1
        return True

    async def _advance(self, to: int) -> bool:
        async with self._db.transaction() as conn:
            moved = await repository.advance(conn, self._id, self._token, to=to, lease=self._lease)
        self._cursor = to
        return moved

    async def _attempt(self, event: dict[str, Any]) -> bool:
        """Send `event`; True when it was delivered and the turn may go on."""
        settings = self._settings
        attempt = self._failures + 1
        attempted_at = datetime.now(UTC)
        outcome = await self._sender.send(self._row["url"], self._secrets, event)
        verdict = rules.verdict(
            status_code=outcome.status_code,
            attempt=attempt,
            max_attempts=settings.webhook_max_attempts,
        )
        status = {Verdict.DELIVERED: "succeeded", Verdict.DEAD: "dead"}.get(verdict, "failed")
        fields = service.attempt_fields(
            subscription_id=self._id,
            event=event,
            attempt_number=attempt,
            outcome=outcome,
            status=status,
            attempted_at=attempted_at,
        )
        skipped_to = event["position"] - 1
        error = _describe(outcome)
        async with self._db.transaction() as conn:
            await repository.insert_delivery(conn, fields)
            if verdict is Verdict.DELIVERED:
                kept = await repository.advance(
                    conn, self._id, self._token, to=event["position"], lease=self._lease
                )
            elif verdict is Verdict.RETRY:
                delay = rules.backoff_seconds(
                    attempt,
                    base=settings.webhook_backoff_seconds,
                    cap=settings.webhook_backoff_max_seconds,
                )
                await repository.retry_later(
                    conn,
                    self._id,
                    self._token,
                    skipped_to=skipped_to,
                    failures=attempt,
                    delay=timedelta(seconds=delay),
                    error=error,
                )
                kept = False
            else:
                await repository.stop_delivering(
                    conn,
                    self._id,
                    self._token,
                    skipped_to=skipped_to,
                    failures=attempt,
                    paused=verdict is Verdict.DEAD,
                    error=error,
                )
                kept = False
        self._log(event, attempt, outcome, verdict)
        self._cursor, self._failures = event["position"], 0
        return kept

    def _log(self, event: dict[str, Any], attempt: int, outcome: Attempt, verdict: Verdict) -> None:
        if verdict is Verdict.DELIVERED:
            return
        # The subscription id, never its URL (query strings carry tokens) or secrets.
        log_event = {
            Verdict.RETRY: "webhook_attempt_failed",
            Verdict.DEAD: "webhook_dead_lettered",
            Verdict.GONE: "webhook_subscription_gone",
        }[verdict]
        log.warning(
            log_event,
            subscription_id=str(self._id),
            position=event["position"],
            attempt=attempt,
            status_code=outcome.status_code,
            error=outcome.error,
        )


def _describe(outcome: Attempt) -> str:
    if outcome.error is not None:
        return outcome.error
    return f"HTTP {outcome.status_code}"


async def _first_of(stop: asyncio.Event, freed: asyncio.Event, *, seconds: float) -> None:
    """Wait until stopped, a delivery slot is freed, or `seconds` pass."""
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(freed.wait())]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waiters, return_exceptions=True)
