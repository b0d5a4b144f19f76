"""Migrations: one head, reversible, and never drifting from the models."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from mercato.app import create_app
from mercato.core.database import sqlalchemy_url
from mercato.core.migrate import SchemaOutOfDate, alembic_config, downgrade, upgrade
from mercato.migrations.registry import SCHEMAS, target_metadata
from tests.settings import make_settings


def test_there_is_one_linear_history() -> None:
    script = ScriptDirectory.from_config(alembic_config("postgresql://unused/x"))
    assert len(script.get_heads()) == 1
    revisions = list(script.walk_revisions())
    assert all(len(r._all_down_revisions) <= 1 for r in revisions)


async def _tables(url: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT schemaname || '.' || tablename AS name FROM pg_tables WHERE schemaname = ANY($1)",
            list(SCHEMAS),
        )
    finally:
        await conn.close()
    return {row["name"] for row in rows}


async def test_upgrade_downgrade_upgrade(fresh_db_url: str) -> None:
    head = await _tables(fresh_db_url)
    assert {"catalog.products", "catalog.categories"} <= head
    await asyncio.to_thread(downgrade, fresh_db_url, "base")
    assert await _tables(fresh_db_url) == set()
    await asyncio.to_thread(upgrade, fresh_db_url)
    assert await _tables(fresh_db_url) == head


async def test_models_and_migrations_do_not_drift(shared_db_url: str) -> None:
    def compare(connection: Connection) -> list[object]:
        context = MigrationContext.configure(
            connection,
            opts={
                "include_schemas": True,
                "include_name": lambda name, type_, _: (
                    name in SCHEMAS if type_ == "schema" else True
                ),
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        return list(compare_metadata(context, target_metadata))

    engine = create_async_engine(sqlalchemy_url(shared_db_url))
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(compare)
    finally:
        await engine.dispose()
    assert differences == []


async def test_the_app_refuses_to_start_on_an_unmigrated_database(fresh_db_url: str) -> None:
    await asyncio.to_thread(downgrade, fresh_db_url, "base")
    app = create_app(make_settings(database_url=fresh_db_url))
    with pytest.raises(SchemaOutOfDate, match="run `mercato migrate`"):
        async with LifespanManager(app):
            pass


async def test_a_match_index_left_invalid_by_a_failed_concurrent_build_is_rebuilt(
    fresh_db_url: str,
) -> None:
    # A CREATE INDEX CONCURRENTLY that fails leaves an INVALID index behind; IF NOT EXISTS
    # alone would keep it, and the planner never uses it.
    await asyncio.to_thread(downgrade, fresh_db_url, "0008")
    conn = await asyncpg.connect(fresh_db_url)
    try:
        await conn.execute(
            "CREATE INDEX ix_products_gtin14 ON catalog.products (lpad(gtin, 14, '0'))"
        )
        await conn.execute(
            "UPDATE pg_index SET indisvalid = false "
            "WHERE indexrelid = 'catalog.ix_products_gtin14'::regclass"
        )
        await asyncio.to_thread(upgrade, fresh_db_url)
        valid = await conn.fetchval(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'catalog.ix_products_gtin14'::regclass"
        )
        definition = await conn.fetchval(
            "SELECT pg_get_indexdef('catalog.ix_products_gtin14'::regclass)"
        )
    finally:
        await conn.close()
    assert valid
    assert "deleted_at IS NULL" in definition  # the index of the migration, not the leftover
