"""The relay on real transactions: order, density, exactly-once logging, failover, crashes."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from mercato.catalog import service
from mercato.catalog.schemas import ProductCreate
from mercato.core.database import Database
from mercato.events.relay import Relay
from mercato.events.repository import move_outbox_to_log
from tests.factories import record_product_events


class Recorder:
    """A publisher that keeps what it was given, and can be told to fail."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail = False

    async def publish(self, events: Sequence[dict[str, Any]]) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.events.extend(events)


async def _products(pooled_db: Database, count: int) -> list[Any]:
    async with pooled_db.transaction() as conn:
        return [
            (
                await service.create_product(
                    conn, ProductCreate(sku=f"RELAY-{n}", name=f"Relay {n}", price="1.00")
                )
            )["id"]
            for n in range(count)
        ]


async def _log(pooled_db: Database) -> list[asyncpg.Record]:
    return await pooled_db.reader.fetch(
        "SELECT position, event_id, type, aggregate_type, aggregate_id, aggregate_version "
        "FROM events.event_log ORDER BY position"
    )


async def _drain(pooled_db: Database, relay_task: asyncio.Task[None], stop: asyncio.Event) -> None:
    for _ in range(500):
        if await pooled_db.reader.fetchval("SELECT count(*) FROM events.outbox") == 0:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    stop.set()
    await relay_task


def _assert_well_ordered(log: list[asyncpg.Record]) -> None:
    assert [row["position"] for row in log] == list(range(1, len(log) + 1)), "positions not dense"
    assert len({row["event_id"] for row in log}) == len(log), "an event was logged twice"
    last_version: dict[tuple[str, str], int] = defaultdict(int)
    for row in log:
        key = (row["aggregate_type"], row["aggregate_id"])
        assert row["aggregate_version"] > last_version[key], f"out of order for {key}"
        last_version[key] = row["aggregate_version"]


@pytest.mark.parametrize("seed", [7, 11, 13])
async def test_concurrent_writers_with_late_commits_are_logged_in_order_exactly_once(
    pooled_db: Database, seed: int
) -> None:
    products = await _products(pooled_db, 5)
    committed: set[tuple[str, int]] = {(str(p), 1) for p in products}
    recorder = Recorder()
    stop = asyncio.Event()
    relay = Relay(pooled_db.url, publishers=[recorder], batch_size=7, idle_interval=0.001)
    relay_task = asyncio.create_task(relay.run(stop))
    rng = random.Random(seed)

    async def writer(seed: int) -> None:
        local = random.Random(seed)
        for _ in range(6):
            product_id = local.choice(products)
            delay = local.choice([0, 0, 0.005, 0.02, 0.2])  # some transactions commit late
            roll_back = local.random() < 0.2
            try:
                async with pooled_db.transaction() as conn:
                    row = await service.update_product(
                        conn,
                        product_id,
                        changes={"name": f"n{local.random()}"},
                        expected_version=None,
                    )
                    await asyncio.sleep(delay)
                    if roll_back:
                        raise RuntimeError("roll back")
            except RuntimeError:
                continue
            committed.add((str(product_id), row["version"]))

    await asyncio.gather(*(writer(rng.randrange(10**9)) for _ in range(16)))
    await _drain(pooled_db, relay_task, stop)

    log = await _log(pooled_db)
    _assert_well_ordered(log)
    product_events = {
        (row["aggregate_id"], row["aggregate_version"])
        for row in log
        if row["aggregate_type"] == "product"
    }
    assert product_events == committed, "a committed event is missing, or a rolled-back one leaked"
    assert [e["position"] for e in recorder.events] == [row["position"] for row in log]


async def test_a_failed_publish_is_retried_and_nothing_is_lost(pooled_db: Database) -> None:
    await _products(pooled_db, 3)
    recorder = Recorder()
    recorder.fail = True
    relay = Relay(pooled_db.url, publishers=[recorder], idle_interval=0.001)
    conn = await asyncpg.connect(pooled_db.url)
    try:
        await Database.init_connection(conn)
        with pytest.raises(ConnectionError):
            await relay.step(conn)
        assert recorder.events == []
        recorder.fail = False
        await relay.step(conn)
    finally:
        await conn.close()
    assert [e["position"] for e in recorder.events] == [1, 2, 3]
    assert await pooled_db.reader.fetchval("SELECT published_position FROM events.relay_state") == 3


async def test_only_one_relay_is_active_and_a_standby_takes_over(pooled_db: Database) -> None:
    first, second = (Relay(pooled_db.url, standby_interval=0.05) for _ in range(2))
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    first_task = asyncio.create_task(first.run(stop_first))
    await asyncio.wait_for(first.active.wait(), 5)
    second_task = asyncio.create_task(second.run(stop_second))
    await asyncio.sleep(0.3)
    assert not second.active.is_set()

    stop_first.set()
    await first_task
    await asyncio.wait_for(second.active.wait(), 5)
    await _products(pooled_db, 4)
    await _drain(pooled_db, second_task, stop_second)
    _assert_well_ordered(await _log(pooled_db))


async def test_a_relay_without_publishers_records_what_it_moves_as_published(
    pooled_db: Database,
) -> None:
    """Also when an earlier relay with publishers left a stretch unpublished."""
    await record_product_events(pooled_db, 2)
    async with pooled_db.transaction() as conn:  # moved by a relay that never published
        await move_outbox_to_log(conn, limit=100)
    await record_product_events(pooled_db, 3)
    relay, stop = Relay(pooled_db.url, idle_interval=0.001), asyncio.Event()
    await _drain(pooled_db, asyncio.create_task(relay.run(stop)), stop)
    state = await pooled_db.reader.fetchrow(
        "SELECT last_position, published_position FROM events.relay_state"
    )
    assert (state["last_position"], state["published_position"]) == (5, 5)
    _assert_well_ordered(await _log(pooled_db))


@pytest.mark.slow
async def test_killing_the_relay_process_loses_and_duplicates_nothing(
    pooled_db: Database, fresh_db_url: str
) -> None:
    env = {**os.environ, "DATABASE_URL": fresh_db_url, "MERCATO_LOG_LEVEL": "WARNING"}

    def start_worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "mercato", "worker"], env=env, stdout=subprocess.DEVNULL
        )

    products = await _products(pooled_db, 3)
    written = 3
    worker = start_worker()
    try:
        for round_ in range(2):
            for n in range(40):
                async with pooled_db.transaction() as conn:
                    await service.update_product(
                        conn,
                        products[n % 3],
                        changes={"name": f"r{round_}-{n}"},
                        expected_version=None,
                    )
                written += 1
                await asyncio.sleep(0.005)
            if round_ == 0:
                for _ in range(200):  # make sure the kill lands mid-stream, after some moves
                    if (
                        await pooled_db.reader.fetchval(
                            "SELECT last_position FROM events.relay_state"
                        )
                        > 0
                    ):
                        break
                    await asyncio.sleep(0.05)
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=10)
                worker = start_worker()
        for _ in range(300):
            if (
                await pooled_db.reader.fetchval("SELECT last_position FROM events.relay_state")
                == written
            ):
                break
            await asyncio.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=10)
    log = await _log(pooled_db)
    assert len(log) == written
    _assert_well_ordered(log)
