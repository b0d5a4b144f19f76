"""The orders context's background work: the expiry sweep, idempotency-key pruning, and the
calls owed to the catalog's stock port over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog

from mercato.core import idempotency
from mercato.core.database import Database
from mercato.orders.repository import IDEMPOTENCY_TABLE, lease_owed_calls
from mercato.orders.service import cancel_lapsed, expire_due_orders
from mercato.orders.stock import RemoteStock

log = structlog.get_logger("mercato.orders.jobs")
CALL_BATCH = 50
# Longer than one call with its retries: a leased row is not handed to another process
# while its call may still be under way.
CALL_LEASE = timedelta(seconds=60)


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


class StockCallJob:
    """Makes the calls orders owe the catalog's stock port over HTTP: confirmations the
    placing request could not make, and the releases that closing orders recorded. Rows are
    leased with FOR UPDATE SKIP LOCKED, so several processes share them; a failed call is
    retried with backoff, for as long as it takes (every call is idempotent)."""

    def __init__(self, db: Database, stock: RemoteStock, *, interval: timedelta) -> None:
        self._db = db
        self._stock = stock
        self._interval = interval.total_seconds()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                log.exception("stock_calls_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)

    async def run_once(self) -> int:
        async with self._db.transaction() as conn:
            owed = await lease_owed_calls(conn, limit=CALL_BATCH, lease=CALL_LEASE)
        for row in owed:
            outcome = await self._stock.call(
                row["order_id"], row["state"], attempts=row["attempts"]
            )
            if outcome == "lapsed":
                async with self._db.transaction() as conn:
                    if await cancel_lapsed(conn, row["order_id"]):
                        log.warning("order_stock_lapsed", order_id=str(row["order_id"]))
        return len(owed)
