"""docs/schema.md is generated from the migrated database, and no index goes undocumented."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from mercato.cli.schema import generate
from mercato.core.schema_docs import UndocumentedIndex

DOCS = Path(__file__).resolve().parents[2] / "docs"


async def test_the_committed_schema_document_is_current(conn: asyncpg.Connection) -> None:
    document = await generate(conn, (DOCS / "schema.preamble.md").read_text())
    assert document == (DOCS / "schema.md").read_text(), (
        "docs/schema.md is out of date. Regenerate it from a database migrated to the head: "
        "`mercato migrate && mercato schema docs` (with DATABASE_URL set, or the embedded "
        "server), and commit docs/schema.md."
    )


async def test_the_document_is_deterministic(conn: asyncpg.Connection) -> None:
    preamble = (DOCS / "schema.preamble.md").read_text()
    assert await generate(conn, preamble) == await generate(conn, preamble)


async def test_an_index_without_a_stated_purpose_is_refused(conn: asyncpg.Connection) -> None:
    await conn.execute("CREATE INDEX ix_products_undocumented ON catalog.products (name)")
    with pytest.raises(UndocumentedIndex, match=r"catalog\.ix_products_undocumented"):
        await generate(conn, "# preamble")
