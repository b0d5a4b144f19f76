"""Consumer groups on the log: in order, effects exactly once, retries, dead letters, replay."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from mercato.cli.main import app as cli
from mercato.core.database import Database
from mercato.events import EventDraft, record_events
from mercato.events.consumers import Consumer, ConsumerRunner
from mercato.events.repository import move_outbox_to_log
from tests.factories import record_product_events


async def _log_events(db: Database, count: int) -> None:
    await record_product_events(db, count)
    async with db.transaction() as conn:
        await move_outbox_to_log(conn, limit=1000)


@pytest.fixture
async def effects(pooled_db: Database) -> Database:
    await pooled_db.reader.execute("CREATE TABLE public.effects (event_id uuid, position bigint)")
    return pooled_db


async def _effects(db: Database) -> list[int]:
    return [
        r["position"]
        for r in await db.reader.fetch("SELECT position FROM public.effects ORDER BY position")
    ]


async def _record(conn: asyncpg.Connection, event: dict[str, Any]) -> None:
    await conn.execute(
        "INSERT INTO public.effects VALUES ($1::uuid, $2)", event["event_id"], event["position"]
    )


async def test_events_are_handled_in_order_and_their_effects_happen_once(effects: Database) -> None:
    await _log_events(effects, 5)
    runner = ConsumerRunner(effects, Consumer("recorder", _record))
    assert await runner.pass_once() == 5
    assert await runner.pass_once() == 0
    await effects.reader.execute("UPDATE events.consumer_offsets SET position = 0")  # a redelivery
    await runner.pass_once()
    assert await _effects(effects) == [1, 2, 3, 4, 5]


async def test_a_failing_attempt_rolls_back_its_effects_and_is_retried(effects: Database) -> None:
    await _log_events(effects, 2)
    failures = {"left": 1}

    async def flaky(conn: asyncpg.Connection, event: dict[str, Any]) -> None:
        await _record(conn, event)
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("transient")

    await ConsumerRunner(effects, Consumer("flaky", flaky, backoff_seconds=0.01)).pass_once()
    assert await _effects(effects) == [1, 2]


async def test_a_poison_event_is_dead_lettered_then_replayed(
    effects: Database, fresh_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _log_events(effects, 3)
    broken = {"on": True}

    async def picky(conn: asyncpg.Connection, event: dict[str, Any]) -> None:
        if broken["on"] and event["position"] == 2:
            raise ValueError("cannot handle position 2")
        await _record(conn, event)

    runner = ConsumerRunner(effects, Consumer("picky", picky, max_attempts=3, backoff_seconds=0.01))
    await runner.pass_once()
    assert await _effects(effects) == [1, 3]  # the rest were not held back

    monkeypatch.setenv("DATABASE_URL", fresh_db_url)
    listed = await asyncio.to_thread(CliRunner().invoke, cli, ["events", "dlq", "list"])
    assert listed.exit_code == 0, listed.output
    assert "picky" in listed.output
    dead = await effects.reader.fetchrow("SELECT position, error FROM events.dead_letters")
    assert (dead["position"], dead["error"]) == (2, "ValueError: cannot handle position 2")

    broken["on"] = False
    replay = await asyncio.to_thread(CliRunner().invoke, cli, ["events", "dlq", "replay", "picky"])
    assert "replay requested for 1" in replay.output
    await runner.pass_once()
    assert await _effects(effects) == [1, 2, 3]
    state = await effects.reader.fetchrow("SELECT attempts, replayed_at FROM events.dead_letters")
    assert state["attempts"] == 3
    assert state["replayed_at"] is not None


async def test_a_consumer_sees_only_the_types_it_asked_for(effects: Database) -> None:
    await _log_events(effects, 2)
    runner = ConsumerRunner(effects, Consumer("none", _record, types=frozenset({"order.paid"})))
    await runner.pass_once()
    assert await _effects(effects) == []
    assert (
        await effects.reader.fetchval(
            "SELECT position FROM events.consumer_offsets WHERE consumer = 'none'"
        )
        == 2
    )


async def test_unwanted_events_between_wanted_ones_are_passed_over_in_order(
    effects: Database,
) -> None:
    kinds = ["other", "other", "wanted", "other", "wanted", "other", "other"]
    drafts = [
        EventDraft(
            type=f"product.{'created' if kind == 'wanted' else 'updated'}",
            aggregate_type="product",
            aggregate_id=str(uuid.uuid4()),
            aggregate_version=1,
            payload={},
        )
        for kind in kinds
    ]
    async with effects.transaction() as conn:
        await record_events(conn, drafts)
        await move_outbox_to_log(conn, limit=1000)
    picky = Consumer("created", _record, types=frozenset({"product.created"}))
    assert await ConsumerRunner(effects, picky).pass_once() == 7
    assert await _effects(effects) == [3, 5]
    offset = await effects.reader.fetchval(
        "SELECT position FROM events.consumer_offsets WHERE consumer = 'created'"
    )
    assert offset == 7
