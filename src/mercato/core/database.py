"""Database access: one asyncpg pool, and the two ways the edge uses it.

Reads that are a single statement run straight on the pool (`db.reader`): no explicit
transaction, so no BEGIN/COMMIT round trips on the hot path. Writes run inside
`db.transaction()`, opened by the request, job or command that owns the use case.
"""

from __future__ import annotations

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
