from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from mercato.app import create_app
from mercato.core.config import Environment, Settings
from mercato.core.database import Database
from tests.database import (
    SingleConnectionDatabase,
    clone_database,
    create_template,
    drop_database,
    server_url,
    with_database,
)

ADMIN_KEY = "test-admin-key-" + "k" * 32
TEMPLATE = f"mercato_template_{os.getpid()}"


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": Environment.TEST,
        "admin_api_key": ADMIN_KEY,
        "secret_key": "test-secret-" + "s" * 32,
        "access_log": False,
        "log_json": True,
        "data_dir": Path(".mercato/test"),
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    url, embedded = server_url()
    try:
        yield url
    finally:
        if embedded is not None:
            embedded.stop()


@pytest.fixture(scope="session")
async def template_db(postgres_server: str) -> AsyncIterator[str]:
    """The name of a freshly migrated database that others are cloned from."""
    await create_template(postgres_server, TEMPLATE)
    yield TEMPLATE
    await drop_database(postgres_server, TEMPLATE)


@pytest.fixture(scope="session")
async def shared_db_url(postgres_server: str, template_db: str) -> AsyncIterator[str]:
    """One clone for every rolled-back test of the run."""
    name = await clone_database(postgres_server, template_db)
    yield with_database(postgres_server, name)
    await drop_database(postgres_server, name)


@pytest.fixture
async def fresh_db_url(postgres_server: str, template_db: str) -> AsyncIterator[str]:
    """A database of the test's own, for tests that commit or race transactions."""
    name = await clone_database(postgres_server, template_db)
    yield with_database(postgres_server, name)
    await drop_database(postgres_server, name)


@pytest.fixture
async def conn(shared_db_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(shared_db_url)
    await Database.init_connection(connection)
    transaction = connection.transaction()
    await transaction.start()
    try:
        yield connection
    finally:
        await transaction.rollback()
        await connection.close()


@pytest.fixture
def db(conn: asyncpg.Connection) -> SingleConnectionDatabase:
    return SingleConnectionDatabase(conn)


@pytest.fixture
async def client(db: SingleConnectionDatabase) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(), database=db)  # type: ignore[arg-type]
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}
