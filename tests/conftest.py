from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from mercato.app import create_app
from mercato.core.database import Database
from mercato.identity import IdentityRuntime
from tests.database import (
    SingleConnectionDatabase,
    clone_database,
    create_template,
    drop_database,
    server_url,
    with_database,
)
from tests.factories import TestUser, make_user
from tests.settings import make_settings

TEMPLATE = f"mercato_template_{os.getpid()}"


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
async def app(db: SingleConnectionDatabase) -> AsyncIterator[FastAPI]:
    """The app, started, on the test's rolled-back connection."""
    application = create_app(make_settings(), database=db)  # type: ignore[arg-type]
    async with LifespanManager(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


@pytest.fixture
def runtime(app: FastAPI) -> IdentityRuntime:
    identity: IdentityRuntime = app.state.identity
    return identity


@pytest.fixture
async def admin_user(conn: asyncpg.Connection, runtime: IdentityRuntime) -> TestUser:
    return await make_user(conn, runtime, roles=("admin",))


@pytest.fixture
def admin(admin_user: TestUser) -> dict[str, str]:
    """Bearer headers of an administrator."""
    return admin_user.headers


@pytest.fixture
async def customer(conn: asyncpg.Connection, runtime: IdentityRuntime) -> TestUser:
    return await make_user(conn, runtime)
