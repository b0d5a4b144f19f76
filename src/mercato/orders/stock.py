"""How an order takes its stock: the catalog's stock port, behind two adapters.

- `LocalStock` (one process, `mercato serve`): the catalog's facade takes the stock in the
  order's own transaction, so the order and its stock commit together or not at all
  (ADR 0032). This is the fast path.
- `RemoteStock` (`mercato serve --context orders`): the catalog over HTTP, as a saga around
  the order's transaction (ADR 0040). (1) Reserve at the catalog under the order's id, with
  no transaction open; (2) record the order, and in the same transaction that the catalog
  is owed a confirmation (`orders.stock_reservations`); (3) after the commit, confirm. If the
  order is not recorded (refused, replayed, crashed), the reservation is released, and the
  catalog's sweep releases any it never hears about again. A confirmation that fails is
  retried by the stock-call job; so are the releases that closing an order owes.

Stock goes back the way it was taken (`service.give_back_stock`): orders with a row in
`orders.stock_reservations` owe the catalog a release call, the others give their stock
back in the transaction that closes them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Literal, Protocol

import structlog

from mercato.catalog import ReservedProduct, StockLine, TakenStock, take_stock
from mercato.core.database import Database, Executor, WriteBatch
from mercato.orders import repository
from mercato.orders.catalog_client import CatalogStockClient, ReservationLapsed
from mercato.orders.errors import StockServiceUnavailable

log = structlog.get_logger("mercato.orders.stock")

# How long the placing request has to confirm before the stock-call job does it instead.
CONFIRM_GRACE = timedelta(seconds=5)
RETRY_MAX = timedelta(seconds=60)
CallOutcome = Literal["done", "lapsed", "failed"]


class Hold(Protocol):
    """One order's stock, inside the transaction that records the order."""

    async def take(self, conn: Executor) -> TakenStock:
        """Before the order is written: its stock, priced (or the refusal, raised), and the
        events to record with the order's."""
        ...

    def record(self, writes: WriteBatch) -> None:
        """With the order's writes: whatever the stock's holder must still be told."""
        ...


class StockPort(Protocol):
    # True when stock is taken before the order's transaction: a request that was already
    # answered must then be replayed before asking for stock again.
    reserves_ahead: bool

    def hold(
        self, order_id: uuid.UUID, lines: list[StockLine]
    ) -> AbstractAsyncContextManager[Hold]:
        """Around the order's transaction (and its idempotency key)."""
        ...

    async def close(self) -> None: ...


class _LocalHold:
    def __init__(self, lines: list[StockLine]) -> None:
        self._lines = lines

    async def take(self, conn: Executor) -> TakenStock:
        return await take_stock(conn, self._lines)

    def record(self, writes: WriteBatch) -> None:
        return None


class LocalStock:
    reserves_ahead = False

    @asynccontextmanager
    async def hold(self, order_id: uuid.UUID, lines: list[StockLine]) -> AsyncIterator[Hold]:
        yield _LocalHold(lines)

    async def close(self) -> None:
        return None


class _RemoteHold:
    def __init__(self, order_id: uuid.UUID, reserved: list[ReservedProduct]) -> None:
        self._order_id = order_id
        self._reserved = reserved

    async def take(self, conn: Executor) -> TakenStock:
        return TakenStock(self._reserved, [])  # the catalog recorded its own events

    def record(self, writes: WriteBatch) -> None:
        repository.owe_confirmation(writes, self._order_id, after=CONFIRM_GRACE)


class RemoteStock:
    reserves_ahead = True

    def __init__(self, client: CatalogStockClient, db: Database) -> None:
        self.client = client
        self._db = db

    @asynccontextmanager
    async def hold(self, order_id: uuid.UUID, lines: list[StockLine]) -> AsyncIterator[Hold]:
        try:
            reserved = await self.client.reserve(order_id, lines)
        except StockServiceUnavailable:
            # The catalog may have reserved and lost its answer every time.
            await self._release_quietly(order_id)
            raise
        try:
            yield _RemoteHold(order_id, reserved)
        except BaseException:
            await self._release_quietly(order_id)
            raise
        # Confirm only what committed: a request may end well without placing this order
        # (answered from a stored answer, found before or only at the end of its transaction).
        if await repository.stock_state(self._db.reader, order_id) == "confirming":
            await self.call(order_id, "confirming")
        else:
            await self._release_quietly(order_id)

    async def _release_quietly(self, order_id: uuid.UUID) -> None:
        try:
            await self.client.release(order_id)
        except StockServiceUnavailable:
            log.warning("stock_release_left_to_sweep", order_id=str(order_id))

    async def call(self, order_id: uuid.UUID, state: str, *, attempts: int = 0) -> CallOutcome:
        """Make the call an order owes the catalog (confirm or release) and record the
        outcome. "lapsed": the catalog no longer holds the stock of an order it was to
        confirm (it released it at its deadline); the caller decides what becomes of it. A
        failure is retried by the stock-call job, backing off with each attempt."""
        confirming = state == "confirming"
        try:
            if confirming:
                await self.client.confirm(order_id)
            else:
                await self.client.release(order_id)
        except ReservationLapsed:
            return "lapsed"
        except StockServiceUnavailable as exc:
            retry_in = min(timedelta(seconds=2**attempts), RETRY_MAX)
            log.warning("stock_call_failed", order_id=str(order_id), state=state, error=exc.code)
            async with self._db.transaction() as conn:
                await repository.call_failed(
                    conn, order_id, state=state, error=exc.detail_message, retry_in=retry_in
                )
            return "failed"
        async with self._db.transaction() as conn:
            done = "confirmed" if confirming else "released"
            await repository.call_made(conn, order_id, state=state, now_state=done)
        return "done"

    async def close(self) -> None:
        await self.client.close()
