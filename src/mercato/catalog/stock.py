"""The catalog's stock port: reserve and release inventory for other contexts (orders).

Reserving is all or nothing, in one statement (`TAKE`): it locks the products' rows in
ascending id order, then decrements each with a conditional `inventory_count >= quantity`.
Concurrent reservations queue on the row locks and re-check the count on the newest row
version when they get it (so stock never goes negative and is never oversold), and two
orders touching the same products lock them in the same order (so they cannot deadlock).
If any line cannot be served, the caller's transaction rolls back every decrement.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import NoReturn

from mercato.catalog import events
from mercato.catalog.errors import OutOfStock, ProductUnavailable
from mercato.core.database import Executor
from mercato.events import EventDraft, record_events

TAKE = (
    # LockRows sits above the Sort: the rows are locked one by one in id order (and a row
    # changed meanwhile is re-checked on its newest version), before any is updated.
    # `(SELECT $n)`: see core/database.py GENERIC_PLANS.
    "WITH locked AS MATERIALIZED (SELECT p.id, w.quantity FROM catalog.products AS p"
    " JOIN unnest((SELECT $1::uuid[]), (SELECT $2::int[])) AS w(id, quantity) ON w.id = p.id"
    " WHERE p.deleted_at IS NULL AND p.is_active ORDER BY p.id FOR UPDATE OF p)"
    " UPDATE catalog.products AS p SET inventory_count = p.inventory_count - l.quantity,"
    " version = p.version + 1, updated_at = now() FROM locked AS l"
    " WHERE p.id = l.id AND p.deleted_at IS NULL AND p.is_active"
    " AND p.inventory_count >= l.quantity"
    " RETURNING p.id, p.sku, p.name, p.price, p.currency, p.inventory_count, p.version,"
    " p.is_active, p.deleted_at"
)
RELEASE = (
    "UPDATE catalog.products SET inventory_count = inventory_count + $2,"
    " version = version + 1, updated_at = now()"
    " WHERE id = $1"
    " RETURNING id, inventory_count, version, is_active, deleted_at"
)


@dataclass(frozen=True, slots=True)
class StockLine:
    product_id: uuid.UUID
    quantity: int


@dataclass(frozen=True, slots=True)
class ReservedProduct:
    product_id: uuid.UUID
    sku: str
    name: str
    unit_price: Decimal
    currency: str
    quantity: int


def merged(lines: Iterable[StockLine]) -> list[StockLine]:
    """One line per product, quantities summed, in lock order (ascending id)."""
    totals: dict[uuid.UUID, int] = defaultdict(int)
    for line in lines:
        totals[line.product_id] += line.quantity
    return [StockLine(product_id, totals[product_id]) for product_id in sorted(totals)]


@dataclass(frozen=True, slots=True)
class TakenStock:
    reserved: list[ReservedProduct]
    # inventory.changed, one per product: the caller records them in the same transaction.
    events: list[EventDraft]


async def reserve(conn: Executor, lines: Iterable[StockLine]) -> list[ReservedProduct]:
    """Take stock for every line or raise (the caller's transaction then undoes it all)."""
    taken = await take(conn, lines)
    await record_events(conn, taken.events)
    return taken.reserved


async def take(conn: Executor, lines: Iterable[StockLine]) -> TakenStock:
    """`reserve`, leaving its events to the caller: an order records them with its own in
    one outbox insert (one round trip less per order)."""
    wanted = merged(lines)
    rows = {
        row["id"]: row
        for row in await conn.fetch(
            TAKE, [line.product_id for line in wanted], [line.quantity for line in wanted]
        )
    }
    for line in wanted:  # the first line that cannot be served, in lock order, is the refusal
        if line.product_id not in rows:
            await _refuse(conn, line)
    reserved: list[ReservedProduct] = []
    drafts = []
    for line in wanted:
        row = rows[line.product_id]
        reserved.append(
            ReservedProduct(
                product_id=row["id"],
                sku=row["sku"],
                name=row["name"],
                unit_price=row["price"],
                currency=row["currency"],
                quantity=line.quantity,
            )
        )
        drafts.append(
            events.inventory_changed(row, previous_count=row["inventory_count"] + line.quantity)
        )
    return TakenStock(reserved, drafts)


async def _refuse(conn: Executor, line: StockLine) -> NoReturn:
    available = await conn.fetchval(
        "SELECT inventory_count FROM catalog.products"
        " WHERE id = $1 AND deleted_at IS NULL AND is_active",
        line.product_id,
    )
    detail = {"field": str(line.product_id), "message": "not for sale"}
    if available is None:
        raise ProductUnavailable(details=[detail])
    detail["message"] = f"{available} available, {line.quantity} asked"
    raise OutOfStock(details=[detail])


async def release(conn: Executor, lines: Iterable[StockLine]) -> None:
    """Give reserved stock back (also to products deleted meanwhile: a restore sees it)."""
    drafts = []
    for line in merged(lines):
        row = await conn.fetchrow(RELEASE, line.product_id, line.quantity)
        if row is not None:
            drafts.append(
                events.inventory_changed(row, previous_count=row["inventory_count"] - line.quantity)
            )
    await record_events(conn, drafts)
