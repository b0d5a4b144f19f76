"""Every query on the ingest context's jobs, rejects and staged rows (plain SQL, asyncpg).

Unification and loading, which are set-based statements over the staged rows and the
catalog, live in `unify.py` and `load.py`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import asyncpg

from mercato.core.database import Executor
from mercato.ingest.validation import STAGED_COLUMNS

JOB_COLUMNS = (
    "id, source, file_name, file_path, file_size, file_sha256, format, mapping, category_map, "
    "dry_run, "
    "status, phase, rows_read, rows_rejected, rows_unchanged, planned_creates, "
    "planned_updates, products_created, products_updated, categories_created, "
    "loaded_through, batch_size, loaded_batches, error_code, error_message, created_by, version, created_at, "
    "updated_at, started_at, finished_at"
)
REJECT_COLUMNS = ("job_id", "row_number", "seq", "field", "rule", "value", "message")


async def insert_job(db: Executor, fields: dict[str, Any]) -> asyncpg.Record:
    columns = list(fields)
    placeholders = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return await db.fetchrow(
        f"INSERT INTO ingest.jobs ({', '.join(columns)}) VALUES ({placeholders}) "
        f"RETURNING {JOB_COLUMNS}",
        *fields.values(),
    )


async def get_job(db: Executor, job_id: uuid.UUID) -> asyncpg.Record | None:
    return await db.fetchrow(f"SELECT {JOB_COLUMNS} FROM ingest.jobs WHERE id = $1", job_id)


async def update_job(db: Executor, job_id: uuid.UUID, **changes: Any) -> asyncpg.Record:
    """Set the given columns (names from this module's callers, never from input), bump the
    version (it orders the job's events) and return the row."""
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(changes, start=2))
    return await db.fetchrow(
        f"UPDATE ingest.jobs SET {assignments}, version = version + 1, updated_at = now() "
        f"WHERE id = $1 RETURNING {JOB_COLUMNS}",
        job_id,
        *changes.values(),
    )


async def record_batch(
    db: Executor,
    job_id: uuid.UUID,
    batch: int,
    *,
    created: int,
    updated: int,
    rejected: int,
    loaded: int,
) -> asyncpg.Record:
    """A load batch committed (in its own transaction): its counts and its number."""
    return await db.fetchrow(
        "UPDATE ingest.jobs SET products_created = products_created + $3, "
        "products_updated = products_updated + $4, rows_rejected = rows_rejected + $5, "
        "loaded_through = loaded_through + $6, loaded_batches = array_append(loaded_batches, $2::int), "
        f"version = version + 1, updated_at = now() WHERE id = $1 RETURNING {JOB_COLUMNS}",
        job_id,
        batch,
        created,
        updated,
        rejected,
        loaded,
    )


async def mark_running(db: Executor, job_id: uuid.UUID) -> asyncpg.Record:
    return await db.fetchrow(
        "UPDATE ingest.jobs SET status = 'running', started_at = coalesce(started_at, now()), "
        f"version = version + 1, updated_at = now() WHERE id = $1 RETURNING {JOB_COLUMNS}",
        job_id,
    )


async def mark_finished(db: Executor, job_id: uuid.UUID) -> asyncpg.Record:
    return await db.fetchrow(
        f"UPDATE ingest.jobs SET finished_at = now() WHERE id = $1 RETURNING {JOB_COLUMNS}",
        job_id,
    )


async def add_to_job(db: Executor, job_id: uuid.UUID, **increments: int) -> asyncpg.Record:
    assignments = ", ".join(f"{name} = {name} + ${i}" for i, name in enumerate(increments, start=2))
    return await db.fetchrow(
        f"UPDATE ingest.jobs SET {assignments}, version = version + 1, updated_at = now() "
        f"WHERE id = $1 RETURNING {JOB_COLUMNS}",
        job_id,
        *increments.values(),
    )


async def list_jobs(
    db: Executor, *, limit: int, before: tuple[datetime, uuid.UUID] | None
) -> list[asyncpg.Record]:
    if before is None:
        return await db.fetch(
            f"SELECT {JOB_COLUMNS} FROM ingest.jobs ORDER BY created_at DESC, id DESC LIMIT $1",
            limit,
        )
    return await db.fetch(
        f"SELECT {JOB_COLUMNS} FROM ingest.jobs WHERE (created_at, id) < ($2, $3) "
        "ORDER BY created_at DESC, id DESC LIMIT $1",
        limit,
        *before,
    )


async def unfinished_jobs(db: Executor, *, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        f"SELECT {JOB_COLUMNS} FROM ingest.jobs WHERE status IN ('queued', 'running') "
        "ORDER BY created_at LIMIT $1",
        limit,
    )


async def list_rejects(
    db: Executor, job_id: uuid.UUID, *, limit: int, after: tuple[int, int] | None
) -> list[asyncpg.Record]:
    row_number, seq = after if after is not None else (0, 0)
    return await db.fetch(
        "SELECT row_number, seq, field, rule, value, message FROM ingest.rejects "
        "WHERE job_id = $1 AND (row_number, seq) > ($2, $3) "
        "ORDER BY row_number, seq LIMIT $4",
        job_id,
        row_number,
        seq,
        limit,
    )


async def copy_staged(conn: asyncpg.Connection, records: Iterable[tuple[Any, ...]]) -> None:
    await conn.copy_records_to_table(
        "staged_rows", schema_name="ingest", columns=STAGED_COLUMNS, records=records
    )


async def copy_rejects(conn: asyncpg.Connection, records: Iterable[tuple[Any, ...]]) -> None:
    await conn.copy_records_to_table(
        "rejects", schema_name="ingest", columns=REJECT_COLUMNS, records=records
    )


async def forget_staging(db: Executor, job_id: uuid.UUID) -> None:
    """Drop a job's staged rows and rejects: staging starts over (or was a dry run)."""
    await db.execute("DELETE FROM ingest.staged_rows WHERE job_id = $1", job_id)
    await db.execute("DELETE FROM ingest.rejects WHERE job_id = $1", job_id)


async def drop_staged_rows(db: Executor, job_id: uuid.UUID) -> None:
    await db.execute("DELETE FROM ingest.staged_rows WHERE job_id = $1", job_id)


async def has_staged_rows(db: Executor, job_id: uuid.UUID) -> bool:
    found: bool = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM ingest.staged_rows WHERE job_id = $1)", job_id
    )
    return found


async def last_load_seq(db: Executor, job_id: uuid.UUID) -> int:
    last: int | None = await db.fetchval(
        "SELECT max(load_seq) FROM ingest.staged_rows WHERE job_id = $1", job_id
    )
    return last or 0


async def try_lock(db: Executor, key: int) -> bool:
    """A transaction-level advisory lock, without waiting."""
    locked: bool = await db.fetchval("SELECT pg_try_advisory_xact_lock($1)", key)
    return locked


async def ended_jobs(db: Executor, *, ended_before: datetime, limit: int) -> list[asyncpg.Record]:
    """Jobs that succeeded or failed before `ended_before`, the longest ended first."""
    return await db.fetch(
        "SELECT id, file_path FROM ingest.jobs WHERE status IN ('succeeded', 'failed') "
        "AND finished_at < $1 ORDER BY finished_at LIMIT $2",
        ended_before,
        limit,
    )


# Up to $2 of a job's rows, walked in primary-key order and deleted by `ctid` (the rows
# just read). Matching them back by key instead, PostgreSQL's generic plan hash-joined the
# batch against a scan of the whole table: 30 times slower on 900,000 rejects.
async def delete_rejects(db: Executor, job_id: uuid.UUID, *, limit: int) -> int:
    status = await db.execute(
        "DELETE FROM ingest.rejects WHERE ctid = ANY(ARRAY(SELECT ctid FROM ingest.rejects "
        "WHERE job_id = $1 ORDER BY row_number, seq LIMIT $2))",
        job_id,
        limit,
    )
    return int(status.split()[-1])


async def delete_staged_rows(db: Executor, job_id: uuid.UUID, *, limit: int) -> int:
    status = await db.execute(
        "DELETE FROM ingest.staged_rows WHERE ctid = ANY(ARRAY(SELECT ctid FROM "
        "ingest.staged_rows WHERE job_id = $1 ORDER BY row_number LIMIT $2))",
        job_id,
        limit,
    )
    return int(status.split()[-1])


async def delete_ended_job(db: Executor, job_id: uuid.UUID) -> bool:
    """Delete an ended job with whatever is left of its rows; False if it is gone already."""
    status = await db.execute(
        "DELETE FROM ingest.jobs WHERE id = $1 AND status IN ('succeeded', 'failed')", job_id
    )
    if status != "DELETE 1":
        return False
    await forget_staging(db, job_id)
    return True


async def job_names_file(db: Executor, file_name: str) -> bool:
    """Whether any job's file is `file_name` (an upload's own name: `<uuid>.feed`)."""
    found: bool = await db.fetchval(
        "SELECT EXISTS (SELECT 1 FROM ingest.jobs WHERE right(file_path, length($1) + 1)"
        " = '/' || $1 OR file_path = $1)",
        file_name,
    )
    return found
