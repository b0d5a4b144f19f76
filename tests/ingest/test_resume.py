"""A crash mid-import: `mercato import products` is killed with SIGKILL while loading, and
`mercato import resume` finishes the job from its last committed batch, with every product
created once and one event per product."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from mercato.core.database import Database
from tests.ingest.conftest import event_counts, write_csv

ROWS = 10_000


def _env(database_url: str, data_dir: Path) -> dict[str, str]:
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith("MERCATO_") and k != "DATABASE_URL"
    }
    return {
        **inherited,
        "DATABASE_URL": database_url,
        "MERCATO_ENVIRONMENT": "test",
        "MERCATO_DATA_DIR": str(data_dir),
        "MERCATO_IMPORT_BATCH_SIZE": "100",
    }


def _mercato(*args: str) -> list[str]:
    return [sys.executable, "-m", "mercato", *args]


async def test_an_import_killed_while_loading_resumes_from_its_last_batch(
    fresh_db_url: str, ingest_db: Database, tmp_path: Path
) -> None:
    feed = write_csv(
        tmp_path / "feed.csv",
        "sku,name,price,category",
        [f"k{i},Product {i},{i % 90 + 1}.00,Tools/Drills" for i in range(ROWS)],
    )
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[categories]\nunknown = "create"\n')
    env = _env(fresh_db_url, tmp_path)
    first = subprocess.Popen(
        _mercato("import", "products", str(feed), "--source", "shop", "--mapping", str(mapping)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(2_400):  # the kill must land mid-load, after some batches committed
            job = await ingest_db.reader.fetchrow(
                "SELECT id, phase, loaded_through FROM ingest.jobs"
            )
            if job is not None and job["phase"] == "loading" and job["loaded_through"] > 0:
                break
            await asyncio.sleep(0.025)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    interrupted = await ingest_db.reader.fetchrow("SELECT * FROM ingest.jobs")
    assert interrupted["status"] == "running"
    assert 0 < interrupted["loaded_through"] < ROWS, "the kill must land mid-load"

    resumed = subprocess.run(
        _mercato("import", "resume", str(interrupted["id"])),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr

    job = await ingest_db.reader.fetchrow("SELECT * FROM ingest.jobs")
    assert (job["status"], job["products_created"], job["loaded_through"]) == (
        "succeeded",
        ROWS,
        ROWS,
    )
    counts = await ingest_db.reader.fetchrow(
        "SELECT count(*) AS products, count(DISTINCT sku) AS skus FROM catalog.products"
    )
    assert (counts["products"], counts["skus"]) == (ROWS, ROWS)
    events = await event_counts(ingest_db)
    assert events["product.created"] == ROWS  # none lost with the crash, none repeated
    assert events["category.created"] == 2
    leftovers = await ingest_db.reader.fetchval("SELECT count(*) FROM ingest.staged_rows")
    assert leftovers == 0
