"""Retention prunes the oldest published events and keeps the log one contiguous stretch."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest
from typer.testing import CliRunner

from mercato.cli.main import app as cli
from mercato.core.database import Database
from mercato.events import EventDraft, oldest_retained_position, record_events
from mercato.events.relay import Relay
from mercato.events.repository import move_outbox_to_log
from mercato.events.retention import prune


@pytest.fixture
async def db(fresh_db_url: str) -> AsyncIterator[Database]:
    database = await Database.connect(fresh_db_url, min_size=1, max_size=4)
    yield database
    await database.close()


async def _write(db: Database, count: int) -> None:
    drafts = [
        EventDraft(
            type="product.updated",
            aggregate_type="product",
            aggregate_id=str(uuid.uuid4()),
            aggregate_version=1,
            payload={},
        )
        for _ in range(count)
    ]
    async with db.transaction() as conn:
        await record_events(conn, drafts)


async def _age(db: Database, *, up_to: int, days: int) -> None:
    await db.reader.execute(
        "UPDATE events.event_log SET recorded_at = recorded_at - make_interval(days => $2) WHERE position <= $1",
        up_to,
        days,
    )


async def _relay_once(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await Database.init_connection(conn)
        await Relay(url).step(conn)
    finally:
        await conn.close()


async def test_old_published_events_are_pruned_oldest_first(db: Database) -> None:
    await _write(db, 5)
    await _relay_once(db.url)
    await _age(db, up_to=3, days=10)

    assert await prune(db, keep=timedelta(days=7), batch=2) == 3
    assert await oldest_retained_position(db.reader) == 4
    assert await prune(db, keep=timedelta(days=7)) == 0


async def test_unpublished_events_are_never_pruned(db: Database) -> None:
    await _write(db, 2)
    async with db.transaction() as conn:  # logged, but no publisher has taken them yet
        await move_outbox_to_log(conn, limit=10)
    await _age(db, up_to=2, days=30)
    assert await prune(db, keep=timedelta(days=7)) == 0
    assert await oldest_retained_position(db.reader) == 1


def test_the_prune_command(fresh_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_db_url)
    result = CliRunner().invoke(cli, ["events", "prune", "--days", "7"])
    assert result.exit_code == 0, result.output
    assert "pruned 0 events" in result.output
