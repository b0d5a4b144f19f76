"""The catalog's stock port: reserve and release inventory for other contexts (orders).

Reserving is all or nothing. Each product's row is decremented with a conditional
`UPDATE ... WHERE inventory_count >= quantity`, in ascending product id order: concurrent
reservations queue on the row lock and re-check the count when they get it (so stock never
goes negative and is never oversold), and two orders touching the same products lock them
in the same order (so they cannot deadlock). If any line cannot be served, the caller's
transaction rolls back every decrement made before it.
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

RESERVE = (
    "UPDATE catalog.products SET inventory_count = inventory_count - $2,"
    " version = version + 1, updated_at = now()"
    " WHERE id = $1 AND deleted_at IS NULL AND is_active AND inventory_count >= $2"
    " RETURNING id, sku, name, price, currency, inventory_count, version, is_active, deleted_at"
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
    reserved: list[ReservedProduct] = []
    drafts = []
    for line in merged(lines):
        row = await conn.fetchrow(RESERVE, line.product_id, line.quantity)
        if row is None:
            await _refuse(conn, line)
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
