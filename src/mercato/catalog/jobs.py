"""The catalog's background work: releasing stock reservations nobody confirmed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta

import structlog

from mercato.catalog import reservations
from mercato.core.database import Database

log = structlog.get_logger("mercato.catalog.jobs")
PRUNE_EVERY = 3600.0


class ReservationSweepJob:
    """Every `interval`: releases unconfirmed reservations past their deadline (their
    caller crashed or gave up before recording its order); hourly, forgets released ones
    older than a day."""

    def __init__(self, db: Database, *, interval: timedelta) -> None:
        self._db = db
        self._interval = interval.total_seconds()
        self._pruned_at = float("-inf")

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                swept = await reservations.sweep(self._db)
                pruned = 0
                if time.monotonic() - self._pruned_at >= PRUNE_EVERY:
                    async with self._db.transaction() as conn:
                        pruned = await reservations.prune_released(conn)
                    self._pruned_at = time.monotonic()
                if swept or pruned:
                    log.info("stock_reservations_swept", released=swept, pruned=pruned)
            except Exception:
                log.exception("stock_reservation_sweep_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
