"""Migration safety: squawk on every migration's SQL catches DDL that locks existing tables."""

from __future__ import annotations

from mercato.core.migration_lint import lint_migrations, lint_sql, offline_sql, revisions

# An existing table (created by an earlier migration), changed the unsafe ways.
UNSAFE = """
BEGIN;
CREATE INDEX ix_products_name ON catalog.products (name);
ALTER TABLE catalog.products ADD COLUMN weight_grams integer NOT NULL;
ALTER TABLE catalog.products ALTER COLUMN inventory_count TYPE bigint;
COMMIT;
"""

# The same intents, done without a long lock, as Alembic writes them offline (an index
# built CONCURRENTLY runs in `op.get_context().autocommit_block()`, outside the transaction).
SAFE = """
BEGIN;
ALTER TABLE catalog.products ADD COLUMN weight_grams integer DEFAULT 0 NOT NULL;
COMMIT;
CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_products_name ON catalog.products (name);
BEGIN;
CREATE TABLE catalog.imports (id uuid NOT NULL, source text NOT NULL);
CREATE INDEX ix_imports_source ON catalog.imports (source);
ALTER TABLE catalog.imports ADD COLUMN state text NOT NULL;
COMMIT;
"""


def test_every_migration_passes() -> None:
    assert lint_migrations() == []


def test_each_revision_is_linted_on_its_own_sql() -> None:
    assert revisions()[0] == "0001"
    sql = offline_sql("0002")
    assert "CREATE TABLE events.event_log" in sql
    assert "catalog.products" not in sql  # 0001's tables are "existing" for 0002


def test_locking_ddl_on_an_existing_table_is_caught() -> None:
    rules = {finding.rule: finding.line for finding in lint_sql(UNSAFE)}
    assert rules == {
        "require-concurrent-index-creation": 3,  # a non-concurrent index build
        "adding-required-field": 4,  # NOT NULL without a default
        "changing-column-type": 5,  # a type change rewrites the table
    }


def test_the_safe_forms_and_new_tables_pass() -> None:
    assert lint_sql(SAFE) == []
