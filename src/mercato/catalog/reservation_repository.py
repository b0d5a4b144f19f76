"""The queries of stock reservations over HTTP (`catalog.stock_reservations`)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from mercato.core.database import Executor

COLUMNS = "id, status, lines, expires_at, created_at, updated_at"


async def claim(
    conn: Executor, reservation_id: uuid.UUID, requested: list[dict[str, Any]], holds_for: timedelta
) -> Any:
    """A new reservation under this id, or None when the id is taken. A concurrent claim of
    the same id waits on the primary key until the first one's transaction ends."""
    return await conn.fetchrow(
        "INSERT INTO catalog.stock_reservations (id, status, lines, expires_at)"
        " VALUES ($1, 'reserved', $2, clock_timestamp() + $3::interval)"
        f" ON CONFLICT (id) DO NOTHING RETURNING {COLUMNS}",
        reservation_id,
        requested,
        holds_for,
    )


async def get(conn: Executor, reservation_id: uuid.UUID, *, for_update: bool = False) -> Any:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {COLUMNS} FROM catalog.stock_reservations WHERE id = $1{lock}", reservation_id
    )


async def set_lines(conn: Executor, reservation_id: uuid.UUID, lines: list[dict[str, Any]]) -> Any:
    return await conn.fetchrow(
        f"UPDATE catalog.stock_reservations SET lines = $2 WHERE id = $1 RETURNING {COLUMNS}",
        reservation_id,
        lines,
    )


async def confirm(conn: Executor, reservation_id: uuid.UUID) -> Any:
    """Confirmed now, or None when it is not waiting for a confirmation."""
    return await conn.fetchrow(
        "UPDATE catalog.stock_reservations SET status = 'confirmed', expires_at = NULL,"
        " updated_at = clock_timestamp() WHERE id = $1 AND status = 'reserved'"
        f" RETURNING {COLUMNS}",
        reservation_id,
    )


async def insert_released(conn: Executor, reservation_id: uuid.UUID) -> Any:
    """A released reservation with no lines, or None when the id is taken."""
    return await conn.fetchrow(
        "INSERT INTO catalog.stock_reservations (id, status, lines)"
        " VALUES ($1, 'released', '[]'::jsonb)"
        f" ON CONFLICT (id) DO NOTHING RETURNING {COLUMNS}",
        reservation_id,
    )


async def mark_released(conn: Executor, reservation_ids: list[uuid.UUID]) -> list[Any]:
    return await conn.fetch(
        "UPDATE catalog.stock_reservations SET status = 'released', expires_at = NULL,"
        " updated_at = clock_timestamp() WHERE id = ANY($1::uuid[])"
        f" RETURNING {COLUMNS}",
        reservation_ids,
    )


async def lock_due(conn: Executor, *, limit: int) -> list[Any]:
    """Unconfirmed reservations past their deadline, oldest first; others' locks skipped."""
    return await conn.fetch(
        "SELECT id, lines FROM catalog.stock_reservations"
        " WHERE status = 'reserved' AND expires_at < clock_timestamp()"
        " ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )


async def prune_released(conn: Executor, *, older_than: timedelta) -> int:
    status = await conn.execute(
        "DELETE FROM catalog.stock_reservations"
        " WHERE status = 'released' AND updated_at < clock_timestamp() - $1::interval",
        older_than,
    )
    return int(status.split()[-1])
