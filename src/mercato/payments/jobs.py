"""The payments context's background work: reconciliation, and the compensation consumer
that marks the payment of a cancelled paid order for refund."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
import structlog

from mercato.core import idempotency
from mercato.core.database import Database
from mercato.events import Consumer
from mercato.payments import repository, service
from mercato.payments.provider import PaymentProvider

log = structlog.get_logger("mercato.payments.jobs")


async def _refund_cancelled_order(conn: asyncpg.Connection, event: dict[str, Any]) -> None:
    order = event["payload"]
    await service.mark_refund_due(conn, uuid.UUID(order["id"]))


COMPENSATION = Consumer(
    name="payments-compensation",
    handle=_refund_cancelled_order,
    types=frozenset({"order.cancelled"}),
)


class ReconcileJob:
    """Every `interval`: settles payments whose outcome never arrived, performs due
    refunds, and forgets idempotency keys older than a day."""

    def __init__(
        self, db: Database, provider: PaymentProvider, *, older_than: timedelta, interval: timedelta
    ) -> None:
        self._db = db
        self._provider = provider
        self._older_than = older_than
        self._interval = interval.total_seconds()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                settled = await service.reconcile(
                    self._db, self._provider, older_than=self._older_than
                )
                async with self._db.transaction() as conn:
                    pruned = await idempotency.prune(conn, table=repository.IDEMPOTENCY_TABLE)
                if settled or pruned:
                    log.info("payments_reconciled", settled=settled, idempotency_keys_pruned=pruned)
            except Exception:
                log.exception("payment_reconciliation_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
