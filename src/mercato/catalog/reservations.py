"""Stock reservations for callers over HTTP (the order service), keyed by the caller's id.

The stock port (stock.py) runs inside its caller's transaction; a caller in another process
cannot share one. It holds stock here instead, in three idempotent steps (a saga):

- `reserve`: takes stock for every line or none, with the port's conditional decrements,
  and records the reservation under the caller's id with a deadline. The same id again
  (a retry after a lost answer) gets the first answer back and takes nothing more.
- `confirm`: the caller recorded its order; the reservation is its until it releases it.
- `release`: gives the stock back. Releasing twice, or an id never reserved, changes nothing.

An unconfirmed reservation past its deadline is released by `sweep`: the caller crashed, or
gave up, between reserving and recording its order. Every step locks the reservation's row
before any product row, and products in ascending id order (as stock.py does), so steps on
one reservation run one at a time and none deadlocks with orders placed in process.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from mercato.catalog import reservation_repository as repository
from mercato.catalog import stock
from mercato.catalog.errors import ReservationMismatch, ReservationNotFound, ReservationReleased
from mercato.catalog.stock import ReservedProduct, StockLine
from mercato.core.database import Database, Executor

SWEEP_BATCH = 200
KEEP_RELEASED = timedelta(days=1)


def reservation_json(row: Any) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "status": row["status"],
        "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None,
        "lines": row["lines"],
    }


def _requested(lines: list[StockLine]) -> list[dict[str, Any]]:
    return [
        {"product_id": str(line.product_id), "quantity": line.quantity}
        for line in stock.merged(lines)
    ]


def _same_request(row: Any, requested: list[dict[str, Any]]) -> bool:
    stored = [{"product_id": s["product_id"], "quantity": s["quantity"]} for s in row["lines"]]
    return stored == requested


def _line_json(product: ReservedProduct) -> dict[str, Any]:
    return {
        "product_id": str(product.product_id),
        "sku": product.sku,
        "name": product.name,
        "unit_price": str(product.unit_price),
        "currency": product.currency,
        "quantity": product.quantity,
    }


def _stock_lines(lines: list[dict[str, Any]]) -> list[StockLine]:
    return [StockLine(uuid.UUID(line["product_id"]), line["quantity"]) for line in lines]


async def reserve(
    conn: Executor, reservation_id: uuid.UUID, lines: list[StockLine], *, holds_for: timedelta
) -> Any:
    """Reserve every line or none under `reservation_id`; a repeat answers the first result."""
    requested = _requested(lines)
    # The id is claimed first, so a concurrent duplicate waits for this one's outcome.
    claimed = await repository.claim(conn, reservation_id, requested, holds_for)
    if claimed is None:
        existing = await repository.get(conn, reservation_id)
        if existing["status"] == "released":
            raise ReservationReleased()
        if not _same_request(existing, requested):
            raise ReservationMismatch()
        return existing
    # Refused (out of stock, not for sale): raised, and the caller's transaction rolls back
    # the claim with every decrement, so a retry with this id tries afresh.
    taken = await stock.reserve(conn, lines)
    return await repository.set_lines(conn, reservation_id, [_line_json(p) for p in taken])


async def confirm(conn: Executor, reservation_id: uuid.UUID) -> Any:
    """The caller recorded its order: no deadline any more. Confirming twice is fine; a
    reservation released meanwhile (at its deadline) cannot be confirmed."""
    row = await repository.confirm(conn, reservation_id)
    if row is not None:
        return row
    row = await repository.get(conn, reservation_id)
    if row is None:
        raise ReservationNotFound()
    if row["status"] == "released":
        raise ReservationReleased()
    return row


async def release(conn: Executor, reservation_id: uuid.UUID) -> Any:
    """Give the reservation's stock back, once. An unknown id is recorded as released (with
    no lines), so that a reserve still on its way for it is refused when it arrives."""
    row = await repository.get(conn, reservation_id, for_update=True)
    if row is None:
        tombstone = await repository.insert_released(conn, reservation_id)
        if tombstone is not None:
            return tombstone
        # A reserve for this id committed while we waited on its key: release that.
        row = await repository.get(conn, reservation_id, for_update=True)
    if row["status"] == "released":
        return row
    await stock.release(conn, _stock_lines(row["lines"]))
    (released,) = await repository.mark_released(conn, [reservation_id])
    return released


async def read(db: Executor, reservation_id: uuid.UUID) -> Any:
    row = await repository.get(db, reservation_id)
    if row is None:
        raise ReservationNotFound()
    return row


async def sweep(db: Database, *, batch: int = SWEEP_BATCH) -> int:
    """Release unconfirmed reservations past their deadline. Safe to run anywhere, any number
    of times: rows another sweeper (or a confirm, or a release) holds are skipped."""
    swept = 0
    while True:
        async with db.transaction() as conn:
            due = await repository.lock_due(conn, limit=batch)
            if due:
                # One release for the batch: its products are locked in one ascending order.
                await stock.release(conn, [s for row in due for s in _stock_lines(row["lines"])])
                await repository.mark_released(conn, [row["id"] for row in due])
        swept += len(due)
        if len(due) < batch:
            return swept


async def prune_released(conn: Executor) -> int:
    """Forget released reservations after a day: no retry of theirs is still on its way."""
    return await repository.prune_released(conn, older_than=KEEP_RELEASED)
