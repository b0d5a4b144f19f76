"""The provider's event ids are remembered `payment_webhook_event_days`, then forgotten by
the reconciliation job."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from mercato.background import background_work, payment_provider
from mercato.core.database import Database, Executor
from mercato.orders.stock import LocalStock
from mercato.payments import repository
from mercato.payments.jobs import forget_webhook_events
from tests.database import SingleConnectionDatabase
from tests.settings import make_settings

KEEP = timedelta(days=30)


async def _receive(conn: asyncpg.Connection, event_id: str, *, days_ago: int = 0) -> None:
    assert await repository.record_webhook(conn, event_id, "payment_intent.succeeded")
    await conn.execute(
        "UPDATE payments.webhook_events SET received_at = now() - make_interval(days => $2)"
        " WHERE event_id = $1",
        event_id,
        days_ago,
    )


async def _event_ids(conn: Executor) -> set[str]:
    rows = await conn.fetch("SELECT event_id FROM payments.webhook_events")
    return {row["event_id"] for row in rows}


async def test_event_ids_older_than_the_window_are_forgotten_and_recent_ones_kept(
    conn: asyncpg.Connection, db: SingleConnectionDatabase
) -> None:
    for event_id, days_ago in (("evt_old_1", 45), ("evt_old_2", 31), ("evt_old_3", 31)):
        await _receive(conn, event_id, days_ago=days_ago)
    await _receive(conn, "evt_recent", days_ago=29)
    await _receive(conn, "evt_today")

    assert await forget_webhook_events(db, keep=KEEP, batch=2) == 3  # type: ignore[arg-type]

    assert await _event_ids(conn) == {"evt_recent", "evt_today"}
    # A recent id still catches its duplicate.
    assert not await repository.record_webhook(conn, "evt_recent", "payment_intent.succeeded")


@pytest.fixture
async def pooled(fresh_db_url: str) -> AsyncIterator[Database]:
    db = await Database.connect(fresh_db_url, min_size=1, max_size=4)
    yield db
    await db.close()


async def test_the_reconciliation_job_of_the_background_work_forgets_old_event_ids(
    pooled: Database,
) -> None:
    async with pooled.transaction() as conn:
        await _receive(conn, "evt_old", days_ago=31)
        await _receive(conn, "evt_recent", days_ago=1)
    settings = make_settings(database_url=pooled.url, payment_webhook_event_days=30)
    provider = payment_provider(settings)
    work = background_work(settings, pooled, provider, LocalStock())
    reconcile = {name: service for service, name in work}["payment-reconcile"]
    stop = asyncio.Event()
    task = asyncio.create_task(reconcile.run(stop))
    try:
        for _ in range(100):
            if "evt_old" not in await _event_ids(pooled.reader):
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task
        await provider.close()

    assert await _event_ids(pooled.reader) == {"evt_recent"}
