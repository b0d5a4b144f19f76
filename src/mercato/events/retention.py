"""Retention: the log keeps a window of events (default 7 days) and prunes the rest.

Pruning deletes the oldest positions first, in batches, and never an event not yet
published, so what remains is always one contiguous stretch of positions. A stream client
resuming from before it is told to re-sync (close 4010).
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import structlog

from mercato.core.database import Database
from mercato.events import repository

log = structlog.get_logger("mercato.retention")

# Any number that no other advisory lock in Mercato uses: "mercato/events retention".
RETENTION_LOCK = 0x6D65726361746F03


async def prune(db: Database, *, keep: timedelta, batch: int = 5_000) -> int:
    """Delete logged events (and inbox entries) older than `keep`; returns events deleted."""
    cutoff = datetime.now(UTC) - keep
    deleted = 0
    while True:
        async with db.transaction() as conn:
            if not await repository.try_lock(conn, RETENTION_LOCK):
                return deleted  # another instance is pruning right now
            count = await repository.prune_log(conn, before=cutoff, limit=batch)
            await repository.prune_inbox(conn, before=cutoff, limit=batch)
        deleted += count
        if count < batch:
            return deleted


class RetentionJob:
    """Prunes every `interval`, for as long as the process runs."""

    def __init__(self, db: Database, *, keep: timedelta, interval: timedelta) -> None:
        self._db = db
        self._keep = keep
        self._interval = interval.total_seconds()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                deleted = await prune(self._db, keep=self._keep)
                if deleted:
                    log.info("event_log_pruned", deleted=deleted)
            except Exception:
                log.exception("event_log_prune_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._interval)
