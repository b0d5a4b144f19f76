"""The import runner (in `mercato worker`, and in `mercato serve` with the embedded
default): runs queued jobs one at a time, resumes jobs whose runner died, and every hour
forgets the jobs that ended more than `import_retention_days` ago (`retention.py`).

A job is "running" with nobody running it when its process was killed: the import lock
(held by a runner's connection) is then free, so the next pass takes it and resumes the job
from its last committed step. While another process holds the lock, this one waits. A job
whose unification or load fails the same way `MAX_FAILED_RESUMES` times in a row is ended
as failed, and meanwhile the jobs queued after it run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import structlog

from mercato.core.database import Database
from mercato.ingest import repository
from mercato.ingest.errors import ImportBusy, ImportNotResumable, is_transient
from mercato.ingest.retention import forget_ended_jobs, forget_orphan_uploads
from mercato.ingest.service import MAX_FAILED_RESUMES, ImportRun

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
        # Consecutive non-transient failures per job, in this process (a restart counts anew).
        self._failures: dict[UUID, int] = {}

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
            except Exception as error:
                causes = _causes(error)
                if all(is_transient(cause) for cause in causes):
                    raise  # a lost connection, a deadlock: resumed at the next pass
                await self._failed(run, job["id"], causes[0])
                continue  # the jobs queued after this one are not held up
            self._failures.pop(job["id"], None)

    async def _failed(self, run: ImportRun, job_id: UUID, error: Exception) -> None:
        failures = self._failures[job_id] = self._failures.get(job_id, 0) + 1
        log.exception("import_resume_failed", job_id=str(job_id), failures=failures)
        if failures >= MAX_FAILED_RESUMES:
            self._failures.pop(job_id, None)
            await run.give_up(error)

    async def _prune_if_due(self) -> None:
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY.total_seconds():
            return
        self._pruned_at = now
        try:
            forgotten = await forget_ended_jobs(
                self._db, keep=self._keep, owned_files=self._owned_files
            )
            orphans = await forget_orphan_uploads(self._db, owned_files=self._owned_files)
        except Exception:
            log.exception("import_prune_failed")
            return
        if forgotten.jobs or forgotten.rows or orphans:
            log.info(
                "import_jobs_pruned",
                jobs=forgotten.jobs,
                rows=forgotten.rows,
                files=forgotten.files,
                orphan_uploads=orphans,
            )


def _causes(error: Exception) -> list[Exception]:
    """The errors behind `error`: the load's parallel connections fail as a group."""
    if isinstance(error, ExceptionGroup):
        return [cause for inner in error.exceptions for cause in _causes(inner)]
    return [error]
