"""Every query of the event backbone."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from mercato.core.database import Executor
from mercato.events.drafts import EventDraft

EVENT_COLUMNS = (
    "event_id, type, schema_version, aggregate_type, aggregate_id, aggregate_version, "
    "occurred_at, trace_context, payload"
)
NOTIFY_CHANNEL = "mercato_events"


# For set-based writers: `OUTBOX_INSERT SELECT <event_id>, <type>, <schema_version>,
# <aggregate_type>, <aggregate_id>, <aggregate_version>, <trace_context>, <payload> FROM …`
# inside the writer's own statement (and so its transaction).
OUTBOX_INSERT = (
    "INSERT INTO events.outbox (event_id, type, schema_version, aggregate_type, "
    "aggregate_id, aggregate_version, trace_context, payload)"
)


# Many events in one INSERT, as arrays: for a WriteBatch (one statement with other writes).
OUTBOX_ROWS = (
    # `(SELECT $n)`: see core/database.py GENERIC_PLANS.
    # The events' ids are PostgreSQL's (no caller of a batch needs them back).
    f"{OUTBOX_INSERT} SELECT gen_random_uuid(), t, v, at, ai, av, $6, p::jsonb FROM unnest("
    "(SELECT $1::text[]), (SELECT $2::smallint[]), (SELECT $3::text[]), (SELECT $4::text[]),"
    " (SELECT $5::int[]), (SELECT $7::text[])) AS d(t, v, at, ai, av, p)"
)


def outbox_rows(drafts: Sequence[EventDraft], *, trace_context: dict[str, Any]) -> tuple[Any, ...]:
    """The arguments of `OUTBOX_ROWS` that insert `drafts`."""
    return (
        [d.type for d in drafts],
        [d.schema_version for d in drafts],
        [d.aggregate_type for d in drafts],
        [d.aggregate_id for d in drafts],
        [d.aggregate_version for d in drafts],
        trace_context,
        [orjson.dumps(d.payload).decode() for d in drafts],
    )


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


async def move_outbox_to_log(
    conn: asyncpg.Connection, *, limit: int, published: bool = False
) -> int:
    """Move up to `limit` committed outbox events into the log; return the new last position.
    `published`: also record them as published (a relay with no publishers).

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
        # The notification is delivered at commit, to every instance listening: they
        # back-fill from the log. One statement: each round trip here delays the stream.
        await conn.execute(
            "WITH state AS (UPDATE events.relay_state SET last_position = $1, "
            "published_position = CASE WHEN $3 THEN $1 ELSE published_position END "
            "WHERE id = 1 RETURNING last_position) "
            "SELECT pg_notify($2, last_position::text) FROM state",
            last + moved,
            NOTIFY_CHANNEL,
            published,
        )
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


async def oldest_retained(db: Executor) -> int:
    """The first position still in the log, or the next to be assigned when it is empty.

    One statement, so one snapshot: read in two, a relay batch committing in between made
    an empty log look like one whose first 30 events were pruned (the stream then refused
    `after: 0` with 4010)."""
    position: int = await db.fetchval(
        "SELECT coalesce((SELECT min(position) FROM events.event_log),"
        " (SELECT last_position + 1 FROM events.relay_state WHERE id = 1))"
    )
    return position


async def claim_for_consumer(db: Executor, consumer: str, event_id: Any) -> bool:
    """Record that `consumer` handles this event; False if it already has (a redelivery)."""
    status = await db.execute(
        "INSERT INTO events.inbox (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        consumer,
        uuid.UUID(str(event_id)),
    )
    return status.endswith(" 1")


async def try_lock(db: Executor, key: int) -> bool:
    """A transaction-level advisory lock, without waiting."""
    locked: bool = await db.fetchval("SELECT pg_try_advisory_xact_lock($1)", key)
    return locked


async def prune_log(db: Executor, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` of the oldest published events recorded before `before`.

    One relay at a time numbers events and stamps `recorded_at`, so the stamp grows with the
    position: the newest event older than `before` (found through its recorded_at index)
    bounds the stretch to delete. Filtering on the stamp instead walked the whole log by
    position whenever nothing was old enough (every pass of a young log)."""
    status = await db.execute(
        "DELETE FROM events.event_log WHERE position IN (SELECT position FROM events.event_log "
        "WHERE position <= least("
        "(SELECT published_position FROM events.relay_state WHERE id = 1),"
        " coalesce((SELECT position FROM events.event_log WHERE recorded_at < $1"
        " ORDER BY recorded_at DESC LIMIT 1), 0)) "
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


async def consumer_offset(db: Executor, consumer: str) -> int:
    position: int | None = await db.fetchval(
        "SELECT position FROM events.consumer_offsets WHERE consumer = $1", consumer
    )
    return position or 0


async def set_consumer_offset(db: Executor, consumer: str, position: int) -> None:
    await db.execute(
        "INSERT INTO events.consumer_offsets (consumer, position) VALUES ($1, $2) "
        "ON CONFLICT (consumer) DO UPDATE SET position = greatest(events.consumer_offsets.position, "
        "excluded.position), updated_at = clock_timestamp()",
        consumer,
        position,
    )


async def dead_letter(
    db: Executor, consumer: str, event: dict[str, Any], *, attempts: int, error: str
) -> None:
    await db.execute(
        "INSERT INTO events.dead_letters (consumer, event_id, position, type, attempts, error) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (consumer, event_id) DO UPDATE SET "
        "attempts = events.dead_letters.attempts + excluded.attempts, error = excluded.error, "
        "failed_at = clock_timestamp(), replay_requested_at = NULL, replayed_at = NULL",
        consumer,
        uuid.UUID(event["event_id"]),
        event["position"],
        event["type"],
        attempts,
        error,
    )


async def dead_letters(db: Executor, consumer: str | None, *, limit: int) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT consumer, event_id, position, type, attempts, error, failed_at, "
        "replay_requested_at, replayed_at FROM events.dead_letters "
        "WHERE ($1::text IS NULL OR consumer = $1) ORDER BY consumer, position LIMIT $2",
        consumer,
        limit,
    )


async def request_replay(db: Executor, consumer: str, event_id: uuid.UUID | None) -> int:
    """Ask for one dead letter (or all of a consumer's, not yet replayed) to be delivered again."""
    status = await db.execute(
        "UPDATE events.dead_letters SET replay_requested_at = clock_timestamp() "
        "WHERE consumer = $1 AND ($2::uuid IS NULL OR event_id = $2) AND replayed_at IS NULL",
        consumer,
        event_id,
    )
    return int(status.split()[-1])


async def replays_requested(db: Executor, consumer: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT event_id FROM events.dead_letters WHERE consumer = $1 "
        "AND replay_requested_at IS NOT NULL AND replayed_at IS NULL ORDER BY position",
        consumer,
    )


async def mark_replayed(db: Executor, consumer: str, event_id: Any) -> None:
    await db.execute(
        "UPDATE events.dead_letters SET replayed_at = clock_timestamp() "
        "WHERE consumer = $1 AND event_id = $2",
        consumer,
        uuid.UUID(str(event_id)),
    )


async def logged_event(db: Executor, event_id: Any) -> dict[str, Any] | None:
    row = await db.fetchrow(
        f"SELECT position, {EVENT_COLUMNS} FROM events.event_log WHERE event_id = $1",
        uuid.UUID(str(event_id)),
    )
    return event_json(row) if row is not None else None


def event_json(row: asyncpg.Record) -> dict[str, Any]:
    event = dict(row)
    event["event_id"] = str(event["event_id"])
    return event
