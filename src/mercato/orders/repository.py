"""Every query the orders context runs: plain SQL, parameterised, on asyncpg."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from mercato.core.database import Executor, WriteBatch

ORDER_COLUMNS = (
    "id, customer_id, status, currency, total, item_count, reservation_expires_at,"
    " cancel_reason, version, created_at, updated_at"
)
LINE_COLUMNS = "order_id, line_no, product_id, sku, name, unit_price, quantity, line_total"
IDEMPOTENCY_TABLE = "orders.idempotency_keys"


def add_order(writes: WriteBatch, order: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    """The order and its lines, as given, into `writes` (sent with the order's other writes
    in one statement: see `service.place_order`)."""
    writes.add(
        "INSERT INTO orders.orders (id, customer_id, status, currency, total, item_count,"
        " reservation_expires_at, version, created_at, updated_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        order["id"],
        order["customer_id"],
        order["status"],
        order["currency"],
        order["total"],
        order["item_count"],
        order["reservation_expires_at"],
        order["version"],
        order["created_at"],
    )
    writes.add(
        f"INSERT INTO orders.order_lines ({LINE_COLUMNS})"
        # `(SELECT $n)`: see core/database.py GENERIC_PLANS.
        " SELECT $1, n, p, s, nm, u, q, t FROM unnest((SELECT $2::smallint[]),"
        " (SELECT $3::uuid[]), (SELECT $4::text[]), (SELECT $5::text[]),"
        " (SELECT $6::numeric[]), (SELECT $7::int[]), (SELECT $8::numeric[]))"
        " AS l(n, p, s, nm, u, q, t)",
        order["id"],
        [line["line_no"] for line in lines],
        [line["product_id"] for line in lines],
        [line["sku"] for line in lines],
        [line["name"] for line in lines],
        [line["unit_price"] for line in lines],
        [line["quantity"] for line in lines],
        [line["line_total"] for line in lines],
    )


async def get_order(conn: Executor, order_id: uuid.UUID, *, for_update: bool = False) -> Any:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(
        f"SELECT {ORDER_COLUMNS} FROM orders.orders WHERE id = $1{lock}", order_id
    )


async def lines_of(conn: Executor, order_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Any]]:
    rows = await conn.fetch(
        f"SELECT {LINE_COLUMNS} FROM orders.order_lines WHERE order_id = ANY($1::uuid[])"
        " ORDER BY order_id, line_no",
        order_ids,
    )
    grouped: dict[uuid.UUID, list[Any]] = {order_id: [] for order_id in order_ids}
    for row in rows:
        grouped[row["order_id"]].append(row)
    return grouped


async def set_status(
    conn: Executor,
    order_id: uuid.UUID,
    *,
    status: str,
    cancel_reason: str | None = None,
    keep_reservation: bool = False,
) -> Any:
    reservation = "reservation_expires_at" if keep_reservation else "NULL"
    return await conn.fetchrow(
        f"UPDATE orders.orders SET status = $2, cancel_reason = coalesce($3, cancel_reason),"
        f" reservation_expires_at = {reservation}, version = version + 1, updated_at = now()"
        f" WHERE id = $1 RETURNING {ORDER_COLUMNS}",
        order_id,
        status,
        cancel_reason,
    )


# Filters a list may use, each a fixed fragment; values are always bound.
LIST_FILTERS = {
    "customer_id": "customer_id = ${}",
    "status": "status = ${}",
    "created_from": "created_at >= ${}",
    "created_to": "created_at < ${}",
}


async def list_orders(
    conn: Executor,
    *,
    filters: dict[str, Any],
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Any:
    """Newest first, keyset-paginated on (created_at, id)."""
    clauses: list[str] = []
    args: list[Any] = []
    for name, value in filters.items():
        args.append(value)
        clauses.append(LIST_FILTERS[name].format(len(args)))
    if before is not None:
        args += list(before)
        clauses.append(f"(created_at, id) < (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    return await conn.fetch(
        f"SELECT {ORDER_COLUMNS} FROM orders.orders{where}"
        f" ORDER BY created_at DESC, id DESC LIMIT ${len(args)}",
        *args,
    )


async def due_for_expiry(conn: Executor, *, limit: int) -> Any:
    return await conn.fetch(
        "SELECT id FROM orders.orders WHERE status = 'pending_payment'"
        " AND reservation_expires_at < now() ORDER BY reservation_expires_at LIMIT $1"
        " FOR UPDATE SKIP LOCKED",
        limit,
    )


# --- stock held by the catalog over HTTP (orders.stock_reservations) ----------------------


def owe_confirmation(writes: WriteBatch, order_id: uuid.UUID, *, after: timedelta) -> None:
    """The order's stock is the catalog's reservation, still to be confirmed; the placing
    request does it at once, the stock-call job from `after` on if it could not. (Sent with
    the order's own writes.)"""
    writes.add(
        "INSERT INTO orders.stock_reservations (order_id, state, next_attempt_at)"
        " VALUES ($1, 'confirming', now() + $2::interval)",
        order_id,
        after,
    )


async def owe_release(conn: Executor, order_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Of these orders (being closed), those whose stock the catalog holds: each now owes
    it a release call, due at once."""
    rows = await conn.fetch(
        "UPDATE orders.stock_reservations SET state = 'releasing', attempts = 0,"
        " next_attempt_at = now(), last_error = NULL, updated_at = now()"
        " WHERE order_id = ANY($1::uuid[]) RETURNING order_id",
        order_ids,
    )
    return {row["order_id"] for row in rows}


async def lease_owed_calls(conn: Executor, *, limit: int, lease: timedelta) -> list[Any]:
    """Calls owed to the catalog that are due, leased to this caller for `lease`."""
    return await conn.fetch(
        "UPDATE orders.stock_reservations SET next_attempt_at = now() + $2::interval,"
        " attempts = attempts + 1 WHERE order_id IN (SELECT order_id FROM"
        " orders.stock_reservations WHERE state IN ('confirming', 'releasing')"
        " AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $1"
        " FOR UPDATE SKIP LOCKED) RETURNING order_id, state, attempts",
        limit,
        lease,
    )


async def call_made(conn: Executor, order_id: uuid.UUID, *, state: str, now_state: str) -> None:
    """The catalog answered the call owed in `state` (unless the order moved on meanwhile)."""
    await conn.execute(
        "UPDATE orders.stock_reservations SET state = $3, last_error = NULL, updated_at = now()"
        " WHERE order_id = $1 AND state = $2",
        order_id,
        state,
        now_state,
    )


async def call_failed(
    conn: Executor, order_id: uuid.UUID, *, state: str, error: str, retry_in: timedelta
) -> None:
    await conn.execute(
        "UPDATE orders.stock_reservations SET next_attempt_at = now() + $3::interval,"
        " last_error = $4, updated_at = now() WHERE order_id = $1 AND state = $2",
        order_id,
        state,
        retry_in,
        error[:500],
    )


async def stock_state(conn: Executor, order_id: uuid.UUID, *, for_update: bool = False) -> Any:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchval(
        f"SELECT state FROM orders.stock_reservations WHERE order_id = $1{lock}", order_id
    )
