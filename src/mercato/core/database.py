"""Database access: one asyncpg pool, and the two ways the edge uses it.

Reads that are a single statement run straight on the pool (`db.reader`): no explicit
transaction, so no BEGIN/COMMIT round trips on the hot path. Writes run inside
`db.transaction()`, opened by the request, job or command that owns the use case.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import asyncpg
import orjson


class Executor(Protocol):
    """What repositories need: asyncpg's query methods (a pool or a connection)."""

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...
    async def fetchrow(self, query: str, *args: Any) -> Any: ...
    async def fetchval(self, query: str, *args: Any) -> Any: ...
    async def execute(self, query: str, *args: Any) -> str: ...
    async def executemany(self, query: str, args: Any) -> None: ...


# GENERIC_PLANS. A prepared statement is planned once only if PostgreSQL finds its generic
# plan no costlier than the plans made for each execution's values. `unnest($1::uuid[])`
# defeats that: with the value in hand the planner knows the array's length, without it
# guesses 10, so every execution is planned afresh (~190 µs for the order's stock
# statement, more than running it). On hot paths arrays are passed as `(SELECT $1::uuid[])`,
# whose value no plan sees: both plans estimate alike, and the generic one is kept.
PARAMETER = re.compile(r"\$(\d+)")
LITERAL = re.compile(r"'[^']*'")


class WriteBatch:
    """Writes of one transaction that need none of each other's results, sent as one
    statement: asyncpg sends one statement per round trip, and on a hot path (placing an
    order) the round trips are most of the application's own cost.

    Each write is one INSERT, UPDATE or DELETE without RETURNING, numbering its parameters
    from $1 as if it ran alone. `send` makes each a data-modifying WITH member (PostgreSQL
    runs every one, in one snapshot; foreign keys are checked at the end of the statement,
    so a row may reference one a sibling inserts) and answers how many rows each wrote."""

    def __init__(self) -> None:
        self._writes: list[tuple[str, tuple[Any, ...]]] = []

    def add(self, sql: str, *args: Any) -> int:
        """Queue a write; its index in the counts `send` answers."""
        _check_write(sql)
        self._writes.append((sql, args))
        return len(self._writes) - 1

    def __len__(self) -> int:
        return len(self._writes)

    async def send(self, conn: Executor) -> list[int]:
        """Run the queued writes (in one round trip) and empty the batch."""
        writes, self._writes = self._writes, []
        if not writes:
            return []
        statement = _combined(tuple((sql, len(args)) for sql, args in writes))
        row = await conn.fetchrow(statement, *(arg for _, args in writes for arg in args))
        return list(row)


# The same few writes recur (an order's), so each check and each combined text is made
# once. Only the writers' own fixed SQL and numbered names go into the text: values are
# always bound.
@functools.lru_cache(maxsize=256)
def _check_write(sql: str) -> None:
    literals = "".join(LITERAL.findall(sql))
    if "$" in PARAMETER.sub("", sql) or "$" in literals or "returning" in sql.lower():
        # Renumbering would change a `$` in a literal, and a RETURNING would be lost.
        raise ValueError("a batched write has only $n parameters and no RETURNING")


@functools.lru_cache(maxsize=256)
def _combined(writes: tuple[tuple[str, int], ...]) -> str:
    """One statement for `writes` ((sql, number of arguments) each, in order)."""
    members: list[str] = []
    counts: list[str] = []
    offset = 0
    for number, (sql, arg_count) in enumerate(writes):
        members.append(f"w{number} AS ({_shifted(sql, offset)} RETURNING 1)")
        counts.append(f"(SELECT count(*) FROM w{number})")  # noqa: S608
        offset += arg_count
    return f"WITH {', '.join(members)} SELECT {', '.join(counts)}"


def _shifted(sql: str, offset: int) -> str:
    """`sql` with its parameters renumbered from $(offset + 1)."""
    return PARAMETER.sub(lambda m: f"${int(m[1]) + offset}", sql)


def asyncpg_dsn(url: str) -> str:
    """Accept SQLAlchemy-style URLs too (`postgresql+asyncpg://`)."""
    for prefix in ("postgresql+asyncpg://", "postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return url


def sqlalchemy_url(url: str) -> str:
    return "postgresql+asyncpg://" + asyncpg_dsn(url)[len("postgresql://") :]


async def _reset_connection(conn: asyncpg.Connection) -> None:
    # asyncpg's default reset sends RESET ALL / UNLISTEN / advisory unlock on every release:
    # one extra round trip per request. Pooled connections never LISTEN, SET or take session
    # locks (long-lived work uses its own connection), so rolling back a leaked
    # transaction is the only reset needed.
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class Database:
    def __init__(self, pool: asyncpg.Pool, url: str) -> None:
        self._pool = pool
        self.url = url

    @staticmethod
    async def init_connection(conn: asyncpg.Connection) -> None:
        """Per-connection setup: JSON columns in and out through orjson."""
        for type_name in ("json", "jsonb"):
            await conn.set_type_codec(
                type_name,
                encoder=lambda v: orjson.dumps(v).decode(),
                decoder=orjson.loads,
                schema="pg_catalog",
            )

    @classmethod
    async def connect(
        cls, url: str, *, min_size: int = 2, max_size: int = 20, statement_timeout_ms: int = 5000
    ) -> Database:
        pool = await asyncpg.create_pool(
            asyncpg_dsn(url),
            min_size=min_size,
            max_size=max_size,
            init=cls.init_connection,
            reset=_reset_connection,
            server_settings={
                "application_name": "mercato",
                "statement_timeout": str(statement_timeout_ms),
            },
        )
        return cls(pool, url)

    @property
    def reader(self) -> Executor:
        reader: Executor = self._pool
        return reader

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield conn

    def pool_stats(self) -> tuple[int, int]:
        """(connections open, connections idle), for metrics."""
        return self._pool.get_size(), self._pool.get_idle_size()

    async def ping(self) -> None:
        await self._pool.fetchval("SELECT 1")

    async def close(self) -> None:
        await self._pool.close()
