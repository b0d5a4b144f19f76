"""The import's use cases: accept a feed as a job, and run a job to its end (or resume it).

A job runs in phases, each of which can be interrupted and started again:
- **staging**: the file is streamed (parse → map → validate) in chunks copied into
  `ingest.staged_rows` and `ingest.rejects`, each chunk committed with the job's counts.
  A file that cannot be parsed fails the job here, before the catalog is touched; an
  interrupted staging starts over.
- **unifying**: one transaction decides every row's fate (`unify.py`).
- **loading**: batches of products, on several connections at once, each batch one
  transaction with its events and the job's progress (`loaded_batches`); a resumed job
  loads only the batches not committed.

Only one job runs at a time (a PostgreSQL advisory lock held by the runner's connection,
released by the server if the runner dies): two feeds unified at once could both create
the same new product.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import structlog

from mercato.core.database import Database, Executor, asyncpg_dsn
from mercato.events import record_events
from mercato.ingest import files, repository
from mercato.ingest.errors import (
    ImportBusy,
    ImportNotFound,
    ImportNotResumable,
    InvalidImportRequest,
    JobFailed,
    is_transient,
)
from mercato.ingest.events import IMPORT_FAILED, IMPORT_PROGRESSED, IMPORT_SUCCEEDED, job_event
from mercato.ingest.formats import format_of
from mercato.ingest.load import load_batch
from mercato.ingest.mapping import MappingSpec
from mercato.ingest.staging import FeedChunks
from mercato.ingest.unify import unify

log = structlog.get_logger("mercato.ingest")

SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
PROGRESS_EVERY_SECONDS = 1.0
# One import at a time, across every process on this database.
LOCK_KEY = 0x6D657263_696D7074  # "merc" "impt"
# Unification or loading failing this many times in a row, the same job, not transiently:
# the runner ends it as failed (`ImportRun.give_up`) rather than retry it for ever.
MAX_FAILED_RESUMES = 3
GIVEN_UP = {"unifying": "IMPORT_UNIFY_FAILED", "loading": "IMPORT_LOAD_FAILED"}

Progress = Callable[[asyncpg.Record], None]


def check_source(source: str) -> str:
    if not SOURCE_NAME.match(source):
        raise InvalidImportRequest(
            "A source name is 1 to 63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit."
        )
    return source


async def create_job(
    db: Executor,
    *,
    source: str,
    path: Path,
    file_name: str,
    spec: MappingSpec,
    dry_run: bool,
    created_by: uuid.UUID | None,
) -> asyncpg.Record:
    """Record a queued job for a file already on disk. Refuses an unknown format."""
    check_source(source)
    try:
        file_format = format_of(file_name, spec)
    except JobFailed as error:
        raise InvalidImportRequest(error.message) from None
    size, sha256 = await asyncio.to_thread(files.size_and_sha256, path)
    job = await repository.insert_job(
        db,
        {
            "source": source,
            "file_name": file_name[:255],
            "file_path": str(path),
            "file_size": size,
            "file_sha256": sha256,
            "format": file_format,
            "mapping": spec.model_dump(mode="json"),
            "dry_run": dry_run,
            "created_by": created_by,
        },
    )
    await record_events(db, [job_event(IMPORT_PROGRESSED, job)])
    return job


async def get_job(db: Executor, job_id: uuid.UUID) -> asyncpg.Record:
    job = await repository.get_job(db, job_id)
    if job is None:
        raise ImportNotFound()
    return job


class ImportRun:
    """Runs one job on a connection of its own (no statement timeout: a unification of a
    million rows is one long statement), holding the import lock while it runs."""

    def __init__(
        self,
        db: Database,
        job_id: uuid.UUID,
        *,
        batch_size: int,
        load_connections: int = 1,
        owned_files: Path | None = None,
        on_progress: Progress | None = None,
    ) -> None:
        self._db = db
        self._job_id = job_id
        self._batch_size = batch_size
        self._load_connections = load_connections
        self._owned_files = owned_files
        self._on_progress = on_progress
        self._reported_at = 0.0

    async def _connect(self) -> asyncpg.Connection:
        # No statement timeout; and no waiting for each batch's WAL flush: a batch lost to a
        # server crash is lost with its progress mark (one transaction), and redone.
        conn = await asyncpg.connect(
            asyncpg_dsn(self._db.url),
            server_settings={"application_name": "mercato-import", "synchronous_commit": "off"},
        )
        await Database.init_connection(conn)
        return conn

    async def run(self) -> asyncpg.Record:
        conn = await self._connect()
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                raise ImportBusy()
            return await self._run(conn)
        finally:
            await conn.close()  # releases the lock

    async def _run(self, conn: asyncpg.Connection) -> asyncpg.Record:
        job = await get_job(conn, self._job_id)
        if job["status"] not in ("queued", "running"):
            raise ImportNotResumable()
        spec = MappingSpec.model_validate(job["mapping"])
        async with conn.transaction():
            job = await repository.mark_running(conn, job["id"])
            if job["phase"] in ("unifying", "loading") and not await repository.has_staged_rows(
                conn, job["id"]
            ):
                # The server restarted and emptied the unlogged staging: stage again.
                job = await repository.update_job(conn, job["id"], phase="staging")
        log.info("import_started", job_id=str(job["id"]), phase=job["phase"])
        phases = {"staging": self._stage, "unifying": self._unify, "loading": self._load}
        try:
            for phase, step in phases.items():
                if job["phase"] == phase:
                    started = time.monotonic()
                    try:
                        job = await step(conn, job, spec)
                    except JobFailed:
                        raise
                    except Exception as error:
                        if phase != "staging" or is_transient(error) or conn.is_closed():
                            raise  # the job stays running, and is resumed
                        log.exception("import_staging_failed", job_id=str(job["id"]))
                        raise JobFailed(
                            "IMPORT_STAGING_FAILED",
                            f"the file could not be staged ({type(error).__name__})",
                        ) from error
                    log.info(
                        "import_phase_done",
                        job_id=str(job["id"]),
                        phase=phase,
                        seconds=round(time.monotonic() - started, 3),
                    )
        except JobFailed as error:
            return await self._end(conn, job, failure=error)
        return await self._end(conn, job, failure=None)

    async def _report(self, conn: Executor, job: asyncpg.Record, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._reported_at >= PROGRESS_EVERY_SECONDS:
            self._reported_at = now
            await record_events(conn, [job_event(IMPORT_PROGRESSED, job)])
        if self._on_progress is not None:
            self._on_progress(job)

    async def _stage(
        self, conn: asyncpg.Connection, job: asyncpg.Record, spec: MappingSpec
    ) -> asyncpg.Record:
        async with conn.transaction():
            await repository.forget_staging(conn, job["id"])
            job = await repository.update_job(
                conn,
                job["id"],
                rows_read=0,
                rows_rejected=0,
                rows_unchanged=0,
                planned_creates=0,
                planned_updates=0,
                loaded_through=0,
                batch_size=None,
                loaded_batches=[],
            )
        job_id = job["id"]
        chunks = FeedChunks(job_id, Path(job["file_path"]), job["format"], spec)
        # Parsing runs in a thread, one chunk ahead of the copy into PostgreSQL.
        next_chunk = asyncio.create_task(asyncio.to_thread(chunks.next))
        try:
            while (chunk := await next_chunk) is not None:
                next_chunk = asyncio.create_task(asyncio.to_thread(chunks.next))
                async with conn.transaction():
                    await repository.copy_staged(conn, chunk.staged)
                    await repository.copy_rejects(
                        conn, [r.as_record(job_id) for r in chunk.rejected]
                    )
                    job = await repository.add_to_job(
                        conn,
                        job_id,
                        rows_read=chunk.rows,
                        rows_rejected=len({r.row_number for r in chunk.rejected}),
                    )
                    await self._report(conn, job)
        except FileNotFoundError:
            raise JobFailed("IMPORT_FILE_MISSING", "the feed file is no longer there") from None
        finally:
            next_chunk.cancel()
        async with conn.transaction():
            job = await repository.update_job(conn, job_id, phase="unifying")
            await self._report(conn, job, force=True)
        return job

    async def _unify(
        self, conn: asyncpg.Connection, job: asyncpg.Record, spec: MappingSpec
    ) -> asyncpg.Record:
        async with conn.transaction():
            plan = await unify(conn, job["id"], job["source"], spec, dry_run=job["dry_run"])
            await repository.add_to_job(
                conn,
                job["id"],
                rows_rejected=plan.rejected,
                rows_unchanged=plan.unchanged,
                planned_creates=plan.creates,
                planned_updates=plan.updates,
                categories_created=plan.categories_created,
            )
            job = await repository.update_job(
                conn,
                job["id"],
                phase="done" if job["dry_run"] else "loading",
                category_map=plan.category_map,
            )
            await self._report(conn, job, force=True)
        return job

    async def _load(
        self, conn: asyncpg.Connection, job: asyncpg.Record, spec: MappingSpec
    ) -> asyncpg.Record:
        """Batches of `batch_size` planned products, on `load_connections` connections at
        once (each product is in exactly one batch, so batches never touch the same rows);
        each batch commits with its number, and a resumed load runs only those missing."""
        if job["batch_size"] is None:
            async with conn.transaction():
                job = await repository.update_job(conn, job["id"], batch_size=self._batch_size)
        size = job["batch_size"]
        last = await repository.last_load_seq(conn, job["id"])
        done = set(job["loaded_batches"])
        pending = asyncio.Queue[int]()
        for batch in range(-(-last // size)):
            if batch not in done:
                pending.put_nowait(batch)

        async def load(loader: asyncpg.Connection) -> None:
            while not pending.empty():
                batch = pending.get_nowait()
                after, through = batch * size, min((batch + 1) * size, last)
                async with loader.transaction():
                    result = await load_batch(
                        loader,
                        job["id"],
                        job["source"],
                        spec,
                        after=after,
                        through=through,
                        category_map=job["category_map"],
                    )
                    progressed = await repository.record_batch(
                        loader,
                        job["id"],
                        batch,
                        created=result.created,
                        updated=result.updated,
                        rejected=result.rejected,
                        loaded=result.planned,
                    )
                    await self._report(loader, progressed)

        extra = [
            await self._connect() for _ in range(min(self._load_connections, pending.qsize()) - 1)
        ]
        try:
            async with asyncio.TaskGroup() as loaders:
                for loader in (conn, *extra):
                    loaders.create_task(load(loader))
        finally:
            for loader in extra:
                await loader.close()
        async with conn.transaction():
            return await repository.update_job(conn, job["id"], phase="done")

    async def give_up(self, error: Exception) -> asyncpg.Record | None:
        """End, as failed, a job whose unification or load failed the same way on every
        resume (the runner gives up after `MAX_FAILED_RESUMES`): left running, it would be
        retried for ever and hold up every job queued after it. The batches it loaded stay
        in the catalog (each committed with its events), and so do its rejects; the job's
        counts say how far it got. None if it ended or another process runs it meanwhile."""
        conn = await self._connect()
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
                return None
            job = await get_job(conn, self._job_id)
            if job["status"] not in ("queued", "running"):
                return None
            phase = job["phase"]
            failure = JobFailed(
                GIVEN_UP.get(phase, "IMPORT_FAILED"),
                f"{phase} failed {MAX_FAILED_RESUMES} times ({type(error).__name__}); "
                f"{job['products_created']} products created and {job['products_updated']} "
                "updated before it stopped",
            )
            return await self._end(conn, job, failure=failure, keep_rejects=phase == "loading")
        finally:
            await conn.close()

    async def _end(
        self,
        conn: asyncpg.Connection,
        job: asyncpg.Record,
        *,
        failure: JobFailed | None,
        keep_rejects: bool = False,
    ) -> asyncpg.Record:
        async with conn.transaction():
            if failure is None:
                await repository.drop_staged_rows(conn, job["id"])
                job = await repository.update_job(conn, job["id"], status="succeeded")
            else:
                if keep_rejects:  # batches reached the catalog: its rejects are still true
                    await repository.drop_staged_rows(conn, job["id"])
                else:
                    # Nothing of this failed job reached the catalog: rejects would mislead.
                    await repository.forget_staging(conn, job["id"])
                job = await repository.update_job(
                    conn,
                    job["id"],
                    status="failed",
                    error_code=failure.code,
                    error_message=failure.message,
                )
            job = await repository.mark_finished(conn, job["id"])
            event = IMPORT_SUCCEEDED if failure is None else IMPORT_FAILED
            await record_events(conn, [job_event(event, job)])
        if self._on_progress is not None:
            self._on_progress(job)
        # Uploaded feeds go when their job ends.
        files.discard_owned_file(Path(job["file_path"]), owned_files=self._owned_files)
        log.info(
            "import_ended",
            job_id=str(job["id"]),
            status=job["status"],
            error_code=job["error_code"],
        )
        return job
