"""Taking stock is one statement; its safety rests on the row locks being taken in id order,
before any row is changed. The plan shows it, and the race tests in tests/orders prove it."""

from __future__ import annotations

import random
import re
import uuid
from typing import Any

import asyncpg

from mercato.catalog.stock import TAKE


async def test_the_rows_are_locked_in_id_order_before_they_are_updated(
    conn: asyncpg.Connection,
) -> None:
    ids = sorted(uuid.uuid4() for _ in range(3))
    plan = [row[0] for row in await conn.fetch(f"EXPLAIN (COSTS OFF) {TAKE}", ids, [1, 1, 1])]
    text = "\n".join(plan)
    # The array parameters' InitPlans (a Result each) are evaluated first and lock nothing.
    plan = [
        line
        for i, line in enumerate(plan)
        if "InitPlan" not in line and not (i and "InitPlan" in plan[i - 1])
    ]
    lock_rows = next(i for i, line in enumerate(plan) if "LockRows" in line)
    assert "CTE locked" in "\n".join(plan[:lock_rows]), text
    # Directly under the lock: a sort by id (or an index scan in id order).
    below = plan[lock_rows + 1 : lock_rows + 3]
    assert any(re.search(r"Sort Key: p(_\d+)?\.id$", line) for line in below) or any(
        "Index Scan" in line and "pkey" in line for line in below
    ), text


async def _plans_after_ten_runs(conn: asyncpg.Connection, sql: str, ids: list[uuid.UUID]) -> Any:
    rng = random.Random(3)
    for _ in range(10):
        async with conn.transaction():  # a savepoint each
            await conn.fetch(sql, sorted(rng.sample(ids, 2)), [1, 1])
    return await conn.fetchrow(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
        sql,
    )


async def test_the_statement_is_planned_once_not_for_every_order(
    conn: asyncpg.Connection,
) -> None:
    """core/database.py GENERIC_PLANS: with its arrays passed bare, PostgreSQL would plan the
    statement again for every order (shown here too, so that a PostgreSQL that stops doing
    so is noticed); passed as `(SELECT $n)`, it keeps the generic plan."""
    ids = [
        row["id"]
        for row in await conn.fetch(
            "INSERT INTO catalog.products (sku, name, price, inventory_count)"
            " SELECT 'PLAN-' || n, 'Product ' || n, 10, 1000 FROM generate_series(1, 5000) AS n"
            " RETURNING id"
        )
    ]
    await conn.execute("ANALYZE catalog.products")  # undone with the test's transaction

    kept = await _plans_after_ten_runs(conn, TAKE, ids)
    assert kept["generic_plans"] >= 5, dict(kept)

    bare = TAKE.replace(
        "unnest((SELECT $1::uuid[]), (SELECT $2::int[]))", "unnest($1::uuid[], $2::int[])"
    )
    assert bare != TAKE
    replanned = await _plans_after_ten_runs(conn, bare, ids)
    assert (replanned["generic_plans"], replanned["custom_plans"]) == (0, 10)
