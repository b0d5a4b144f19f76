"""Test databases: one migrated template per run, cloned for each suite that needs one.

`TEST_DATABASE_URL` points at a server (CI uses the local one); without it the embedded
PostgreSQL is started in `.mercato/test`. Tests that only read and write through one
connection run inside a transaction that is rolled back; tests that race real transactions
get a database of their own, cloned from the template in a few milliseconds.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from mercato.core.database import Executor, asyncpg_dsn
from mercato.core.embedded import EmbeddedPostgres
from mercato.core.migrate import upgrade


def server_url() -> tuple[str, EmbeddedPostgres | None]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return asyncpg_dsn(url), None
    if os.environ.get("CI") == "true":
        raise RuntimeError("CI=true requires TEST_DATABASE_URL (see .ci/run)")
    embedded = EmbeddedPostgres(Path(".mercato/test"))
    return embedded.start(), embedded


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def admin_execute(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def create_template(url: str, name: str) -> str:
    await admin_execute(
        url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'
    )
    template_url = with_database(url, name)
    # Alembic runs its own event loop, so it gets a thread of its own.
    await asyncio.to_thread(upgrade, template_url)
    return template_url


async def clone_database(url: str, template: str, prefix: str = "mercato_t") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    await admin_execute(url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


async def drop_database(url: str, name: str) -> None:
    await admin_execute(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class SingleConnectionDatabase:
    """A `Database` over one connection inside an outer transaction (rolled back later).

    The app's `transaction()` becomes a savepoint, so a use case that fails still rolls
    back only its own work, exactly as in production.
    """

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @property
    def reader(self) -> Executor:
        reader: Executor = self.conn
        return reader

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.conn.transaction():
            yield self.conn

    def pool_stats(self) -> tuple[int, int]:
        return 1, 0

    async def ping(self) -> None:
        await self.conn.fetchval("SELECT 1")

    async def close(self) -> None:
        return None
