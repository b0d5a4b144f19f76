"""A job whose load fails the same way at every resume must not hold up the queue for
ever: the runner gives up on it after a few tries, and runs the jobs behind it meanwhile."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from mercato.core.database import Database
from mercato.ingest.jobs import ImportRunner
from mercato.ingest.service import MAX_FAILED_RESUMES, get_job
from tests.ingest.conftest import products, queue_job, rejects, write_csv
from tests.payments.conftest import eventually


async def test_a_load_failing_at_every_resume_ends_as_failed_and_the_queue_moves_on(
    ingest_db: Database, tmp_path: Path
) -> None:
    # A rule the catalog's own model does not know, so validation lets the row through and
    # the load's INSERT fails on it, every time: a stand-in for a bug in the load.
    await ingest_db.reader.execute(
        "ALTER TABLE catalog.products ADD CONSTRAINT test_no_bad_skus CHECK (sku NOT LIKE 'BAD%')"
    )
    stuck_job = await queue_job(
        ingest_db,
        "supplier",
        write_csv(
            tmp_path / "stuck.csv",
            "sku,name,price",
            ["1,One,1.00", "2,Two,2.00", "3,,3.00", "BAD4,Four,4.00"],
        ),
    )
    stuck = stuck_job["id"]
    behind_job = await queue_job(
        ingest_db, "other", write_csv(tmp_path / "fine.csv", "sku,name,price", ["9,Nine,9.00"])
    )
    behind = behind_job["id"]
    runner = ImportRunner(
        ingest_db,
        batch_size=2,  # rows 1-2 load, then the batch with BAD4 fails
        owned_files=tmp_path / "uploads",
        keep=timedelta(days=30),
        load_connections=1,
        interval=0.05,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        job = await eventually(
            lambda: get_job(ingest_db.reader, stuck),
            lambda j: j["status"] != "running" and j["status"] != "queued",
            timeout=30,
        )
    finally:
        stop.set()
        await task
    assert (job["status"], job["error_code"]) == ("failed", "IMPORT_LOAD_FAILED")
    assert f"failed {MAX_FAILED_RESUMES} times (CheckViolationError)" in job["error_message"]
    assert "2 products created" in job["error_message"]
    # What was loaded before the failing batch stays, with its rejects (row 3 has no name).
    catalog = await products(ingest_db)
    assert {"1", "2"} <= catalog.keys()
    assert "BAD4" not in catalog
    assert [(row, field) for row, field, _, _ in await rejects(ingest_db, stuck)] == [(3, "name")]
    staged = await ingest_db.reader.fetchval(
        "SELECT count(*) FROM ingest.staged_rows WHERE job_id = $1", stuck
    )
    assert staged == 0
    # The job queued behind it did not wait for the give-up.
    assert (await get_job(ingest_db.reader, behind))["status"] == "succeeded"
    assert "9" in catalog
