"""Retention prunes the oldest published events and keeps the log one contiguous stretch."""

from __future__ import annotations

from datetime import timedelta

import asyncpg
import pytest
from typer.testing import CliRunner

from mercato.cli.main import app as cli
from mercato.core.database import Database
from mercato.events import oldest_retained_position
from mercato.events.relay import Relay
from mercato.events.repository import move_outbox_to_log
from mercato.events.retention import prune
from tests.factories import record_product_events


async def _age(pooled_db: Database, *, up_to: int, days: int) -> None:
    await pooled_db.reader.execute(
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


async def test_old_published_events_are_pruned_oldest_first(pooled_db: Database) -> None:
    await record_product_events(pooled_db, 5)
    await _relay_once(pooled_db.url)
    await _age(pooled_db, up_to=3, days=10)

    assert await prune(pooled_db, keep=timedelta(days=7), batch=2) == 3
    assert await oldest_retained_position(pooled_db.reader) == 4
    assert await prune(pooled_db, keep=timedelta(days=7)) == 0


async def test_a_young_log_is_left_alone(pooled_db: Database) -> None:
    # No event is old enough: the boundary is "none", not "up to the last published one".
    await record_product_events(pooled_db, 3)
    await _relay_once(pooled_db.url)
    assert await prune(pooled_db, keep=timedelta(days=7)) == 0
    assert await oldest_retained_position(pooled_db.reader) == 1
    await _age(pooled_db, up_to=1, days=10)
    assert await prune(pooled_db, keep=timedelta(days=7)) == 1
    assert await oldest_retained_position(pooled_db.reader) == 2


async def test_unpublished_events_are_never_pruned(pooled_db: Database) -> None:
    await record_product_events(pooled_db, 2)
    async with pooled_db.transaction() as conn:  # logged, but no publisher has taken them yet
        await move_outbox_to_log(conn, limit=10)
    await _age(pooled_db, up_to=2, days=30)
    assert await prune(pooled_db, keep=timedelta(days=7)) == 0
    assert await oldest_retained_position(pooled_db.reader) == 1


def test_the_prune_command(fresh_db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", fresh_db_url)
    result = CliRunner().invoke(cli, ["events", "prune", "--days", "7"])
    assert result.exit_code == 0, result.output
    assert "pruned 0 events" in result.output
