"""Every query of the event backbone."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from mercato.core.database import Executor
from mercato.events.drafts import EventDraft

EVENT_COLUMNS = (
    "event_id, type, schema_version, aggregate_type, aggregate_id, aggregate_version, "
    "occurred_at, trace_context, payload"
)
NOTIFY_CHANNEL = "mercato_events"


async def insert_outbox(
    db: Executor, drafts: Sequence[EventDraft], *, trace_context: dict[str, Any]
) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in drafts]
    await db.executemany(
        "INSERT INTO events.outbox (event_id, type, schema_version, aggregate_type, "
        "aggregate_id, aggregate_version, trace_context, payload) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [
            (
                event_id,
                d.type,
                d.schema_version,
                d.aggregate_type,
                d.aggregate_id,
                d.aggregate_version,
                trace_context,
                d.payload,
            )
            for event_id, d in zip(ids, drafts, strict=True)
        ],
    )
    return ids


async def move_outbox_to_log(conn: asyncpg.Connection, *, limit: int) -> int:
    """Move up to `limit` committed outbox events into the log; return the new last position.

    Runs in the caller's transaction. Only committed rows are visible to the DELETE, and a
    row leaves the outbox in the same transaction that gives it a position, so an event
    whose transaction commits late is simply moved by a later batch: nothing is skipped,
    nothing is numbered twice, and positions stay dense because they are counted here,
    not drawn from a sequence.
    """
    last: int = await conn.fetchval(
        "SELECT last_position FROM events.relay_state WHERE id = 1 FOR UPDATE"
    )
    moved: int = await conn.fetchval(
        f"WITH moved AS (DELETE FROM events.outbox WHERE seq IN "
        f"(SELECT seq FROM events.outbox ORDER BY seq LIMIT $2) RETURNING seq, {EVENT_COLUMNS}), "
        f"logged AS (INSERT INTO events.event_log (position, {EVENT_COLUMNS}) "
        f"SELECT $1 + row_number() OVER (ORDER BY seq), {EVENT_COLUMNS} FROM moved "
        f"RETURNING 1) SELECT count(*) FROM logged",
        last,
        limit,
    )
    if moved:
        await conn.execute(
            "UPDATE events.relay_state SET last_position = $1 WHERE id = 1", last + moved
        )
        # Delivered at commit, to every instance listening: they back-fill from the log.
        await conn.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, str(last + moved))
    return last + moved


async def outbox_has_events(db: Executor) -> bool:
    found: bool = await db.fetchval("SELECT EXISTS (SELECT 1 FROM events.outbox)")
    return found


async def positions(db: Executor) -> tuple[int, int]:
    """(last position assigned, last position published)."""
    row = await db.fetchrow(
        "SELECT last_position, published_position FROM events.relay_state WHERE id = 1"
    )
    return row["last_position"], row["published_position"]


async def mark_published(db: Executor, position: int) -> None:
    await db.execute(
        "UPDATE events.relay_state SET published_position = $1 "
        "WHERE id = 1 AND published_position < $1",
        position,
    )


async def read_log(
    db: Executor,
    *,
    after: int,
    limit: int,
    up_to: int | None = None,
    types: Sequence[str] | None = None,
) -> list[asyncpg.Record]:
    return await db.fetch(
        f"SELECT position, {EVENT_COLUMNS} FROM events.event_log "
        "WHERE position > $1 AND ($3::bigint IS NULL OR position <= $3) "
        "AND ($4::text[] IS NULL OR type = ANY($4)) ORDER BY position LIMIT $2",
        after,
        limit,
        up_to,
        list(types) if types else None,
    )


async def oldest_position(db: Executor) -> int | None:
    position: int | None = await db.fetchval("SELECT min(position) FROM events.event_log")
    return position


async def claim_for_consumer(db: Executor, consumer: str, event_id: uuid.UUID) -> bool:
    """Record that `consumer` handles this event; False if it already has (a redelivery)."""
    status = await db.execute(
        "INSERT INTO events.inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        consumer,
        event_id,
    )
    return status.endswith(" 1")


async def try_lock(db: Executor, key: int) -> bool:
    """A transaction-level advisory lock, without waiting."""
    locked: bool = await db.fetchval("SELECT pg_try_advisory_xact_lock($1)", key)
    return locked


async def prune_log(db: Executor, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` of the oldest published events recorded before `before`."""
    status = await db.execute(
        "DELETE FROM events.event_log WHERE position IN (SELECT position FROM events.event_log "
        "WHERE recorded_at < $1 AND position <= "
        "(SELECT published_position FROM events.relay_state WHERE id = 1) "
        "ORDER BY position LIMIT $2)",
        before,
        limit,
    )
    return int(status.split()[-1])


async def prune_inbox(db: Executor, *, before: datetime, limit: int) -> int:
    status = await db.execute(
        "DELETE FROM events.inbox WHERE (consumer, event_id) IN (SELECT consumer, event_id "
        "FROM events.inbox WHERE processed_at < $1 LIMIT $2)",
        before,
        limit,
    )
    return int(status.split()[-1])


def event_json(row: asyncpg.Record) -> dict[str, Any]:
    event = dict(row)
    event["event_id"] = str(event["event_id"])
    return event
