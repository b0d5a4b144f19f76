"""A batch's cost must not depend on the feed's size: the load reaches the staged rows
through the batch's own keys, never by reading every staged row of the job, whatever the
planner would weigh for a feed of this size."""

from __future__ import annotations

import uuid

import asyncpg

from mercato.ingest.load import SOURCE_RECORDS_SQL

STAGED = 20_000  # a feed large enough that the planner weighs a scan against the index
BATCH = 500


async def _staged_job(conn: asyncpg.Connection) -> uuid.UUID:
    job_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO ingest.staged_rows (job_id, row_number, source_key, content_hash, sku,"
        " name, price, currency, attributes, product_id, outcome, load_seq)"
        " SELECT $1, n, 'key-' || n, '\\x00', 'SKU-' || n, 'Product ' || n, 10, 'EUR', '{}',"
        " gen_random_uuid(), 'create', n FROM generate_series(1, $2) AS n",
        job_id,
        STAGED,
    )
    await conn.execute("ANALYZE ingest.staged_rows")
    return job_id


async def test_source_records_are_found_through_each_products_key_not_a_scan_of_the_job(
    conn: asyncpg.Connection,
) -> None:
    job_id = await _staged_job(conn)
    rows = await conn.fetch(
        f"EXPLAIN (COSTS OFF) {SOURCE_RECORDS_SQL}", job_id, "feed", BATCH, 2 * BATCH
    )
    plan = "\n".join(row[0] for row in rows)
    assert "Seq Scan on staged_rows" not in plan, plan
    assert "Nested Loop" in plan, plan
    assert "ix_staged_rows_product" in plan, plan

    # And it records exactly the batch's rows.
    await conn.execute(SOURCE_RECORDS_SQL, job_id, "feed", BATCH, 2 * BATCH)
    recorded = await conn.fetchval(
        "SELECT count(*) FROM ingest.source_records WHERE source = 'feed'"
    )
    assert recorded == BATCH
