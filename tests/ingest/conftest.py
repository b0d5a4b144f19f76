"""Import helpers: run a feed through a real import job on a database of the test's own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from mercato.core.database import Database
from mercato.ingest.mapping import default_mapping, parse_mapping
from mercato.ingest.service import ImportRun, create_job

FEEDS = Path(__file__).resolve().parents[2] / "examples" / "feeds"
ACME = (FEEDS / "acme" / "products.csv", FEEDS / "acme" / "mapping.toml")
GLOBEX = (FEEDS / "globex" / "products.json", FEEDS / "globex" / "mapping.toml")

Importer = Callable[..., Awaitable[asyncpg.Record]]


@pytest.fixture
async def ingest_db(fresh_db_url: str) -> AsyncIterator[Database]:
    db = await Database.connect(fresh_db_url, min_size=1, max_size=4)
    yield db
    await db.close()


async def queue_job(
    db: Database,
    source: str,
    feed: Path,
    mapping: Path | str | None = None,
    *,
    dry_run: bool = False,
    file_name: str | None = None,
) -> asyncpg.Record:
    """A queued job for `feed`, as the API or the CLI records one."""
    if isinstance(mapping, Path):
        mapping = mapping.read_text()
    spec = parse_mapping(mapping) if mapping is not None else default_mapping()
    async with db.transaction() as conn:
        job: asyncpg.Record = await create_job(
            conn,
            source=source,
            path=feed,
            file_name=file_name or feed.name,
            spec=spec,
            dry_run=dry_run,
            created_by=None,
        )
    return job


@pytest.fixture
def run_import(ingest_db: Database) -> Importer:
    async def run(
        source: str,
        feed: Path,
        mapping: Path | str | None = None,
        *,
        dry_run: bool = False,
        batch_size: int = 2,
    ) -> asyncpg.Record:
        job = await queue_job(ingest_db, source, feed, mapping, dry_run=dry_run)
        run = ImportRun(ingest_db, job["id"], batch_size=batch_size, load_connections=2)
        return await run.run()

    return run


async def products(db: Database) -> dict[str, dict[str, Any]]:
    """The catalog by SKU, with each product's category name."""
    rows = await db.reader.fetch(
        "SELECT p.*, c.name AS category FROM catalog.products p "
        "LEFT JOIN catalog.categories c ON c.id = p.category_id ORDER BY p.sku"
    )
    return {row["sku"]: dict(row) for row in rows}


async def rejects(db: Database, job_id: Any) -> list[tuple[int, str, str, str | None]]:
    rows = await db.reader.fetch(
        "SELECT row_number, field, rule, value FROM ingest.rejects WHERE job_id = $1 "
        "ORDER BY row_number, seq",
        job_id,
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


async def event_counts(db: Database) -> dict[str, int]:
    rows = await db.reader.fetch(
        "SELECT type, count(*) AS n FROM (SELECT type FROM events.outbox "
        "UNION ALL SELECT type FROM events.event_log) e GROUP BY type"
    )
    return {row["type"]: row["n"] for row in rows}


async def row_versions(db: Database) -> list[tuple[str, str]]:
    """Every catalog, source-record and provenance row with the transaction that last wrote
    it (`xmin`): equal before and after means nothing was written."""
    rows = await db.reader.fetch(
        "SELECT 'product:' || id, xmin::text FROM catalog.products "
        "UNION ALL SELECT 'category:' || id, xmin::text FROM catalog.categories "
        "UNION ALL SELECT 'source:' || source || '/' || source_key, xmin::text "
        "FROM ingest.source_records "
        "UNION ALL SELECT 'provenance:' || product_id, xmin::text FROM ingest.provenance "
        "ORDER BY 1"
    )
    return [tuple(row) for row in rows]  # type: ignore[misc]


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "".join(row + "\n" for row in rows))
    return path
