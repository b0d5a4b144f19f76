"""Order use cases. Each runs in the caller's transaction. Stock goes through the
catalog's stock port (orders/stock.py): in process, in that same transaction, so an order
and its reservation commit together or not at all; or over HTTP, as a saga around it."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from mercato.catalog import StockLine, release_stock
from mercato.core.database import Database, Executor, WriteBatch
from mercato.core.errors import Forbidden
from mercato.core.security import Principal
from mercato.events import add_events, record_events
from mercato.orders import events, repository
from mercato.orders.errors import InvalidTransition, MixedCurrencies, OrderNotFound
from mercato.orders.rules import (
    HOLDS_RESERVATION,
    TRANSITIONS,
    Action,
    Status,
    line_total,
    next_status,
)
from mercato.orders.schemas import LineIn
from mercato.orders.stock import Hold

READ_ANY = "orders:read:any"
WRITE_ANY = "orders:write:any"
EXPIRY_BATCH = 200


def order_json(row: Any, lines: Iterable[Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "customer_id": str(row["customer_id"]),
        "status": row["status"],
        "currency": row["currency"],
        "total": str(row["total"]),
        "item_count": row["item_count"],
        "reservation_expires_at": (
            row["reservation_expires_at"].isoformat() if row["reservation_expires_at"] else None
        ),
        "cancel_reason": row["cancel_reason"],
        "version": row["version"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "lines": [
            {
                "product_id": str(line["product_id"]),
                "sku": line["sku"],
                "name": line["name"],
                "unit_price": str(line["unit_price"]),
                "quantity": line["quantity"],
                "line_total": str(line["line_total"]),
            }
            for line in lines
        ],
    }


def _merged_in_request_order(lines: list[LineIn]) -> list[LineIn]:
    quantities: dict[uuid.UUID, int] = {}
    for line in lines:
        quantities[line.product_id] = quantities.get(line.product_id, 0) + line.quantity
    return [LineIn(product_id=p, quantity=q) for p, q in quantities.items()]


def stock_lines_of(lines: list[LineIn]) -> list[StockLine]:
    return [StockLine(line.product_id, line.quantity) for line in _merged_in_request_order(lines)]


async def place_order(
    conn: Executor,
    writes: WriteBatch,
    hold: Hold,
    customer_id: uuid.UUID,
    lines: list[LineIn],
    *,
    order_id: uuid.UUID,
    holds_for: timedelta,
) -> dict[str, Any]:
    """Take the order's stock from `hold` (every line or none), freeze the prices, and open
    the order. The order, its lines and its events go into `writes`, which the caller sends
    with its own (the stored answer) in one statement."""
    wanted = _merged_in_request_order(lines)
    taken = await hold.take(conn)
    reserved = {r.product_id: r for r in taken.reserved}
    currencies = {r.currency for r in reserved.values()}
    if len(currencies) != 1:
        raise MixedCurrencies(
            details=[{"field": "body.lines", "message": ", ".join(sorted(currencies))}]
        )
    priced: list[dict[str, Any]] = [
        {
            "line_no": number,
            "product_id": line.product_id,
            "sku": reserved[line.product_id].sku,
            "name": reserved[line.product_id].name,
            "unit_price": reserved[line.product_id].unit_price,
            "quantity": line.quantity,
            "line_total": line_total(reserved[line.product_id].unit_price, line.quantity),
        }
        for number, line in enumerate(wanted, start=1)
    ]
    # Stamped here rather than by the database: the order, its event and the stored answer
    # then need nothing back from one another, and go in one statement.
    placed_at = datetime.now(UTC)
    order = {
        "id": order_id,
        "customer_id": customer_id,
        "status": Status.PENDING_PAYMENT.value,
        "currency": currencies.pop(),
        "total": sum((Decimal(line["line_total"]) for line in priced), Decimal("0.00")),
        "item_count": sum(line.quantity for line in wanted),
        "reservation_expires_at": placed_at + holds_for,
        "cancel_reason": None,
        "version": 1,
        "created_at": placed_at,
        "updated_at": placed_at,
    }
    repository.add_order(writes, order, priced)
    hold.record(writes)
    result = order_json(order, priced)
    # The stock's events and the order's, in one outbox insert.
    add_events(writes, [*taken.events, events.order_event(events.ORDER_CREATED, result)])
    if order["total"] == 0:
        # Nothing to pay (free items): no provider can take a payment of zero, so the order
        # is paid now, in the same transaction, and never waits to expire.
        await writes.send(conn)
        return await change_status(conn, None, order_id, Action.PAY, reason=None)
    return result


async def read_order(db: Executor, principal: Principal, order_id: uuid.UUID) -> dict[str, Any]:
    row = await repository.get_order(db, order_id)
    _require_visible(principal, row)
    lines = await repository.lines_of(db, [order_id])
    return order_json(row, lines[order_id])


async def order_owner(db: Executor, order_id: uuid.UUID) -> uuid.UUID | None:
    """The customer an order belongs to (the streams' access check), or None."""
    owner: uuid.UUID | None = await db.fetchval(
        "SELECT customer_id FROM orders.orders WHERE id = $1", order_id
    )
    return owner


def _require_visible(principal: Principal, row: Any) -> None:
    if row is None or not (principal.owns(row["customer_id"]) or principal.can(READ_ANY)):
        raise OrderNotFound()


async def change_status(
    conn: Executor,
    principal: Principal | None,
    order_id: uuid.UUID,
    action: Action,
    *,
    reason: str | None = None,
) -> dict[str, Any]:
    """Move an order along the state machine (`principal` None: the system, e.g. expiry).

    Leaving a state that holds a reservation for cancelled or expired gives the stock back;
    cancelling a paid order gives back the sold stock too (its refund is the payments
    context's part of the compensation)."""
    row = await repository.get_order(conn, order_id, for_update=True)
    if principal is not None:
        _require_visible(principal, row)
    elif row is None:
        raise OrderNotFound()
    current = Status(row["status"])
    target = next_status(current, action)
    if principal is not None:
        _require_allowed(principal, current, action)
    lines = (await repository.lines_of(conn, [order_id]))[order_id]
    if target in RELEASES_STOCK:
        await give_back_stock(conn, {order_id: lines})
    return await _record_status(conn, order_id, target, lines, reason=reason)


RELEASES_STOCK = frozenset({Status.CANCELLED, Status.EXPIRED})


async def give_back_stock(conn: Executor, lines: dict[uuid.UUID, list[Any]]) -> None:
    """Stock goes back the way it was taken: orders whose stock the catalog holds over HTTP
    owe it a release call (made after this transaction, retried until it is answered), the
    others give it back here. One release for all the in-process ones: their product rows
    are locked in one ascending order, as every other stock change locks them, so callers
    releasing batches (the expiry sweep) cannot deadlock."""
    remote = await repository.owe_release(conn, list(lines))
    await release_stock(
        conn,
        [
            StockLine(line["product_id"], line["quantity"])
            for order_id, order_lines in lines.items()
            if order_id not in remote
            for line in order_lines
        ],
    )


async def _record_status(
    conn: Executor, order_id: uuid.UUID, target: Status, lines: list[Any], *, reason: str | None
) -> dict[str, Any]:
    updated = await repository.set_status(
        conn,
        order_id,
        status=target.value,
        cancel_reason=reason,
        keep_reservation=target in HOLDS_RESERVATION,
    )
    result = order_json(updated, lines)
    await record_events(conn, [events.order_event(events.STATUS_EVENTS[target], result)])
    return result


def _require_allowed(principal: Principal, current: Status, action: Action) -> None:
    if principal.can(WRITE_ANY):
        return
    # A customer may only cancel their own order, and only before paying for it.
    if not (action is Action.CANCEL and current is Status.PENDING_PAYMENT):
        raise Forbidden("Only staff can do this to an order.")


async def expire_due_orders(db: Database, *, batch: int = EXPIRY_BATCH) -> int:
    """Expire pending orders past their reservation deadline and release their stock.

    Safe to run anywhere, any number of times: rows another sweeper holds are skipped,
    and an order that was paid or cancelled meanwhile is no longer pending, so it is
    never expired (releasing happens exactly once, with the status change)."""
    expired = 0
    while True:
        async with db.transaction() as conn:
            due = [row["id"] for row in await repository.due_for_expiry(conn, limit=batch)]
            lines = await repository.lines_of(conn, due)
            await give_back_stock(conn, lines)
            for order_id in due:
                await _record_status(conn, order_id, Status.EXPIRED, lines[order_id], reason=None)
        expired += len(due)
        if len(due) < batch:
            return expired


async def cancel_lapsed(conn: Executor, order_id: uuid.UUID) -> bool:
    """The catalog released an order's stock before hearing that the order exists (its
    confirmation came too late: the order service was down past the catalog's deadline).
    The order cannot be honoured from that stock: cancel it (a paid one is then refunded by
    compensation). False if the order had moved on meanwhile."""
    await repository.get_order(conn, order_id, for_update=True)
    if await repository.stock_state(conn, order_id, for_update=True) != "confirming":
        return False
    try:
        await change_status(conn, None, order_id, Action.CANCEL, reason="stock reservation lapsed")
    except InvalidTransition:
        await repository.call_made(conn, order_id, state="confirming", now_state="released")
    return True


# --- the port the payments context uses -------------------------------------------------


async def payable_order(conn: Executor, principal: Principal, order_id: uuid.UUID) -> Any:
    """The caller's own order, locked, if it can be paid now (else the reason, raised)."""
    row = await repository.get_order(conn, order_id, for_update=True)
    if row is None or not principal.owns(row["customer_id"]):
        raise OrderNotFound()
    next_status(Status(row["status"]), Action.PAY)  # 409 unless pending payment
    return row


async def settle_order(
    conn: Executor, order_id: uuid.UUID, action: Action, reason: str | None
) -> bool:
    """Apply a payment outcome to an order, once: True if the order moved, False if it had
    already left the state the outcome applies to (paid twice, expired meanwhile, ...)."""
    row = await repository.get_order(conn, order_id, for_update=True)
    if row is None or (Status(row["status"]), action) not in TRANSITIONS:
        return False
    await change_status(conn, None, order_id, action, reason=reason)
    return True


async def lock_order(conn: Executor, order_id: uuid.UUID) -> None:
    """Lock an order's row. Payments take it before their own row, as paying does, so the
    two contexts always lock in one order and cannot deadlock."""
    await lock_order_status(conn, order_id)


async def lock_order_status(conn: Executor, order_id: uuid.UUID) -> str | None:
    """`lock_order`, answering the order's status (None: no such order)."""
    status: str | None = await conn.fetchval(
        "SELECT status FROM orders.orders WHERE id = $1 FOR UPDATE", order_id
    )
    return status


async def statuses(conn: Executor, order_ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await conn.fetch(
        "SELECT id, status FROM orders.orders WHERE id = ANY($1::uuid[])", order_ids
    )
    return {row["id"]: row["status"] for row in rows}
