"""The orders context's background work: the expiry sweep and idempotency-key pruning."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog

from mercato.core import idempotency
from mercato.core.database import Database
from mercato.orders.repository import IDEMPOTENCY_TABLE
from mercato.orders.service import expire_due_orders

log = structlog.get_logger("mercato.orders.jobs")


class ExpiryJob:
    """Every `interval`: expires unpaid orders past their deadline (releasing their stock)
    and forgets idempotency keys older than a day."""

    def __init__(self, db: Database, *, interval: timedelta) -> None:
        self._db = db
        self._interval = interval.total_seconds()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                expired = await expire_due_orders(self._db)
                async with self._db.transaction() as conn:
                    pruned = await idempotency.prune(conn, table=IDEMPOTENCY_TABLE)
                if expired or pruned:
                    log.info("orders_swept", expired=expired, idempotency_keys_pruned=pruned)
            except Exception:
                log.exception("order_sweep_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
