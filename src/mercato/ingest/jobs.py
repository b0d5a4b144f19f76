"""The import runner (in `mercato worker`, and in `mercato serve` with the embedded
default): runs queued jobs one at a time, resumes jobs whose runner died, and every hour
forgets the jobs that ended more than `import_retention_days` ago (`retention.py`).

A job is "running" with nobody running it when its process was killed: the import lock
(held by a runner's connection) is then free, so the next pass takes it and resumes the job
from its last committed step. While another process holds the lock, this one waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta
from pathlib import Path

import structlog

from mercato.core.database import Database
from mercato.ingest import repository
from mercato.ingest.errors import ImportBusy, ImportNotResumable
from mercato.ingest.retention import forget_ended_jobs
from mercato.ingest.service import ImportRun

log = structlog.get_logger("mercato.ingest")

PRUNE_EVERY = timedelta(hours=1)


class ImportRunner:
    def __init__(
        self,
        db: Database,
        *,
        batch_size: int,
        owned_files: Path,
        keep: timedelta,
        load_connections: int = 1,
        interval: float = 5.0,
    ) -> None:
        self._db = db
        self._batch_size = batch_size
        self._load_connections = load_connections
        self._owned_files = owned_files
        self._keep = keep
        self._interval = interval
        self._wake = asyncio.Event()
        self._pruned_at: float | None = None

    def wake(self) -> None:
        """A job was queued: look now rather than at the next pass."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._wake.clear()
            try:
                await self._run_pending(stop)
            except Exception:
                log.exception("import_pass_failed")
            await self._prune_if_due()
            with contextlib.suppress(TimeoutError):
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait(
                        {waiter, stopper},
                        timeout=self._interval,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    waiter.cancel()
                    stopper.cancel()

    async def _run_pending(self, stop: asyncio.Event) -> None:
        for job in await repository.unfinished_jobs(self._db.reader, limit=10):
            if stop.is_set():
                return
            run = ImportRun(
                self._db,
                job["id"],
                batch_size=self._batch_size,
                load_connections=self._load_connections,
                owned_files=self._owned_files,
            )
            try:
                await run.run()
            except ImportBusy:
                return  # another process is importing; try again later
            except ImportNotResumable:
                continue  # finished meanwhile

    async def _prune_if_due(self) -> None:
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY.total_seconds():
            return
        self._pruned_at = now
        try:
            forgotten = await forget_ended_jobs(
                self._db, keep=self._keep, owned_files=self._owned_files
            )
        except Exception:
            log.exception("import_prune_failed")
            return
        if forgotten.jobs or forgotten.rows:
            log.info(
                "import_jobs_pruned",
                jobs=forgotten.jobs,
                rows=forgotten.rows,
                files=forgotten.files,
            )
