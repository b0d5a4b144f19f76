"""Retention: an ended import job (succeeded or failed) is forgotten `import_retention_days`
after it ended, with its rejects, any staged rows left and its uploaded file.

What the catalog keeps of a feed stays: `source_records` and `provenance` describe the
catalog, not the job. A job's rows go first, in batches of short transactions (one job may
have rejected millions of rows); the job itself goes last, in the transaction that also
deletes its file, so a prune cut short leaves a job to find again, never rows or a file
that nothing points at. Queued and running jobs are never touched.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

import structlog

from mercato.core.database import Database
from mercato.ingest import repository
from mercato.ingest.files import discard_owned_file

log = structlog.get_logger("mercato.ingest")

# Any number that no other advisory lock in Mercato uses: "mercato/ingest retention".
RETENTION_LOCK = 0x6D65726361746F04
JOBS_PER_READ = 100
ROW_BATCH = 5_000


@dataclass(frozen=True)
class Forgotten:
    jobs: int = 0
    rows: int = 0  # rejects and staged rows
    files: int = 0


async def forget_ended_jobs(
    db: Database, *, keep: timedelta, owned_files: Path | None, batch: int = ROW_BATCH
) -> Forgotten:
    """Delete the jobs that ended more than `keep` ago, with their rows, and their files
    if they are uploads kept under `owned_files`. Stops early (returning what it did) while
    another instance is pruning."""
    ended_before = datetime.now(UTC) - keep
    jobs = rows = files = 0
    while True:
        ended = await repository.ended_jobs(
            db.reader, ended_before=ended_before, limit=JOBS_PER_READ
        )
        for job in ended:
            deleted_rows = await _forget_rows(db, job["id"], batch=batch)
            if deleted_rows is None:
                return Forgotten(jobs, rows, files)
            rows += deleted_rows
            async with db.transaction() as conn:
                if not await repository.try_lock(conn, RETENTION_LOCK):
                    return Forgotten(jobs, rows, files)
                if not await repository.delete_ended_job(conn, job["id"]):
                    continue
                # Before the commit: if the commit fails, the job is found again next time.
                if _discard(Path(job["file_path"]), owned_files, job["id"]):
                    files += 1
            jobs += 1
        if len(ended) < JOBS_PER_READ:
            return Forgotten(jobs, rows, files)


async def _forget_rows(db: Database, job_id: UUID, *, batch: int) -> int | None:
    """Delete a job's rejects, then its staged rows, `batch` at a time; None if another
    instance holds the retention lock."""
    deleted = 0
    for delete in (repository.delete_rejects, repository.delete_staged_rows):
        while True:
            async with db.transaction() as conn:
                if not await repository.try_lock(conn, RETENTION_LOCK):
                    return None
                count = await delete(conn, job_id, limit=batch)
            deleted += count
            if count < batch:
                break
    return deleted


# An upload is written just before its job row is inserted: one with no job after this long
# was left by a process that died in between.
ORPHAN_GRACE = timedelta(hours=1)


async def forget_orphan_uploads(
    db: Database, *, owned_files: Path, grace: timedelta = ORPHAN_GRACE
) -> int:
    """Delete uploads (`<owned_files>/<uuid>.feed`) older than `grace` that no job names;
    returns how many went."""
    cutoff = (datetime.now(UTC) - grace).timestamp()
    deleted = 0
    for path in await asyncio.to_thread(_uploads_older_than, owned_files, cutoff):
        if await repository.job_names_file(db.reader, path.name):
            continue
        if discard_owned_file(path, owned_files=owned_files):
            deleted += 1
    return deleted


def _uploads_older_than(owned_files: Path, cutoff: float) -> list[Path]:
    if not owned_files.is_dir():
        return []
    old = []
    for path in owned_files.glob("*.feed"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                old.append(path)
        except FileNotFoundError:
            continue  # discarded meanwhile
    return old


def _discard(path: Path, owned_files: Path | None, job_id: UUID) -> bool:
    try:
        return discard_owned_file(path, owned_files=owned_files)
    except OSError:
        # The job goes anyway: one file that cannot be deleted must not hold back every
        # later job. The log line says which job's file was left.
        log.warning("import_file_not_deleted", job_id=str(job_id), exc_info=True)
        return False
