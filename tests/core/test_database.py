"""WriteBatch: independent writes of one transaction sent as one statement."""

from __future__ import annotations

import asyncpg
import pytest

from mercato.core.database import WriteBatch


async def _tables(conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE TEMP TABLE parent (id int PRIMARY KEY, name text NOT NULL)")
    await conn.execute(
        "CREATE TEMP TABLE child (parent_id int NOT NULL REFERENCES parent, n int NOT NULL)"
    )


async def test_writes_go_in_one_statement_with_their_own_parameters(
    conn: asyncpg.Connection,
) -> None:
    await _tables(conn)
    await conn.execute("INSERT INTO parent VALUES (9, 'old')")
    writes = WriteBatch()
    # The child references a parent its sibling inserts: foreign keys are checked at the
    # end of the statement.
    writes.add("INSERT INTO parent (id, name) VALUES ($1, $2)", 1, "one")
    writes.add("INSERT INTO child SELECT $1, n FROM unnest($2::int[]) AS n", 1, [10, 20, 30])
    writes.add("UPDATE parent SET name = $2 WHERE id = $1", 9, "renamed")
    writes.add("DELETE FROM parent WHERE id = $1", 404)
    assert len(writes) == 4

    assert await writes.send(conn) == [1, 3, 1, 0]

    assert len(writes) == 0
    assert await conn.fetch("SELECT id, name FROM parent ORDER BY id") == [
        (1, "one"),
        (9, "renamed"),
    ]
    assert [r["n"] for r in await conn.fetch("SELECT n FROM child ORDER BY n")] == [10, 20, 30]
    assert await writes.send(conn) == []  # nothing queued: no statement


async def test_a_failing_write_fails_them_all(conn: asyncpg.Connection) -> None:
    await _tables(conn)
    writes = WriteBatch()
    writes.add("INSERT INTO parent (id, name) VALUES ($1, $2)", 2, "two")
    writes.add("INSERT INTO child (parent_id, n) VALUES ($1, $2)", 404, 1)
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        async with conn.transaction():  # a savepoint, so the test's transaction lives on
            await writes.send(conn)
    assert await conn.fetchval("SELECT count(*) FROM parent") == 0


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO parent (id, name) VALUES ($1, $2) RETURNING id",
        "INSERT INTO parent (id, name) VALUES ($1, '$2')",
        "INSERT INTO parent (id, name) VALUES ($1, $$x$$)",
    ],
)
def test_writes_with_returning_or_stray_dollars_are_refused(sql: str) -> None:
    with pytest.raises(ValueError, match="RETURNING"):
        WriteBatch().add(sql, 1, "x")
