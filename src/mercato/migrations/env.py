"""Alembic environment: runs migrations over asyncpg, for every context's schema."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from mercato.core.database import sqlalchemy_url
from mercato.migrations.registry import SCHEMAS, target_metadata

config = context.config


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    if type_ == "schema":
        return name in SCHEMAS
    return True


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        include_schemas=True,
        include_name=_include_name,
        compare_type=True,
        compare_server_default=True,
        literal_binds=connection is None,
    )


def run_offline() -> None:
    _configure(url=sqlalchemy_url(config.attributes["database_url"]))
    with context.begin_transaction():
        context.run_migrations()


def _run_online(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_online(connection)
        return
    engine = create_async_engine(sqlalchemy_url(config.attributes["database_url"]))
    async with engine.connect() as conn:
        await conn.run_sync(_run_online)
        await conn.commit()
    await engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    asyncio.run(run_online())
