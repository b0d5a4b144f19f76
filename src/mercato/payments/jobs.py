"""The payments context's background work: reconciliation (with the pruning of what
payments remember for a while), and the compensation consumer that marks the payment of a
cancelled paid order for refund."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog

from mercato.core import idempotency
from mercato.core.database import Database
from mercato.events import Consumer
from mercato.payments import repository, service
from mercato.payments.provider import PaymentProvider

log = structlog.get_logger("mercato.payments.jobs")
PRUNE_BATCH = 5_000


async def _refund_cancelled_order(conn: asyncpg.Connection, event: dict[str, Any]) -> None:
    order = event["payload"]
    await service.mark_refund_due(conn, uuid.UUID(order["id"]))


COMPENSATION = Consumer(
    name="payments-compensation",
    handle=_refund_cancelled_order,
    types=frozenset({"order.cancelled"}),
)


async def forget_webhook_events(db: Database, *, keep: timedelta, batch: int = PRUNE_BATCH) -> int:
    """Forget provider event ids received more than `keep` ago, in batches of short
    transactions; returns how many."""
    before = datetime.now(UTC) - keep
    pruned = 0
    while True:
        async with db.transaction() as conn:
            count = await repository.prune_webhook_events(conn, before=before, limit=batch)
        pruned += count
        if count < batch:
            return pruned


class ReconcileJob:
    """Every `interval`: settles payments whose outcome never arrived, performs due
    refunds, forgets idempotency keys older than a day and provider event ids older than
    `keep_webhook_events`."""

    def __init__(
        self,
        db: Database,
        provider: PaymentProvider,
        *,
        older_than: timedelta,
        interval: timedelta,
        keep_webhook_events: timedelta,
    ) -> None:
        self._db = db
        self._provider = provider
        self._older_than = older_than
        self._interval = interval.total_seconds()
        self._keep_webhook_events = keep_webhook_events

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                settled = await service.reconcile(
                    self._db, self._provider, older_than=self._older_than
                )
                async with self._db.transaction() as conn:
                    pruned = await idempotency.prune(conn, table=repository.IDEMPOTENCY_TABLE)
                events = await forget_webhook_events(self._db, keep=self._keep_webhook_events)
                if settled or pruned or events:
                    log.info(
                        "payments_reconciled",
                        settled=settled,
                        idempotency_keys_pruned=pruned,
                        webhook_events_pruned=events,
                    )
            except Exception:
                log.exception("payment_reconciliation_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
