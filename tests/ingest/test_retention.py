"""Retention: ended import jobs go `import_retention_days` after they ended, with their rows
and their uploaded file; unfinished jobs, the user's own files and what the catalog keeps of
a feed stay."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mercato.background import background_work, payment_provider
from mercato.cli.main import app as cli
from mercato.core.database import Database
from mercato.ingest import repository
from mercato.ingest.retention import forget_ended_jobs, forget_orphan_uploads
from mercato.orders.stock import LocalStock
from tests.ingest.conftest import ACME, Importer, queue_job, rejects, row_versions, write_csv
from tests.settings import make_settings

KEEP = timedelta(days=30)


async def _age(db: Database, job_id: Any, *, days: int = 31) -> None:
    """Move every timestamp of a job `days` into the past."""
    await db.reader.execute(
        "UPDATE ingest.jobs SET created_at = created_at - make_interval(days => $2), "
        "updated_at = updated_at - make_interval(days => $2), "
        "started_at = started_at - make_interval(days => $2), "
        "finished_at = finished_at - make_interval(days => $2) WHERE id = $1",
        job_id,
        days,
    )


async def _job_ids(db: Database) -> set[Any]:
    return {row["id"] for row in await db.reader.fetch("SELECT id FROM ingest.jobs")}


def _upload(uploads: Path) -> Path:
    """A feed kept as `POST /imports` keeps one: `<uploads>/<uuid>.feed`."""
    uploads.mkdir(exist_ok=True)
    return Path(shutil.copy(ACME[0], uploads / f"{uuid.uuid4()}.feed"))


async def test_jobs_that_ended_before_the_window_go_with_their_rejects(
    run_import: Importer, ingest_db: Database, tmp_path: Path
) -> None:
    old = await run_import("acme", ACME[0], ACME[1])
    broken = tmp_path / "broken.json"
    broken.write_text('[{"sku": "1", "name": ')
    failed = await run_import("globex", broken)
    recent = await run_import("acme", ACME[0], ACME[1])
    assert (old["status"], failed["status"], recent["status"]) == (
        "succeeded",
        "failed",
        "succeeded",
    )
    old_rejects = len(await rejects(ingest_db, old["id"]))
    assert old_rejects > 2
    await _age(ingest_db, old["id"])
    await _age(ingest_db, failed["id"])

    forgotten = await forget_ended_jobs(ingest_db, keep=KEEP, owned_files=None, batch=2)

    assert (forgotten.jobs, forgotten.rows, forgotten.files) == (2, old_rejects, 0)
    assert await _job_ids(ingest_db) == {recent["id"]}
    assert await rejects(ingest_db, old["id"]) == []
    assert len(await rejects(ingest_db, recent["id"])) == old_rejects


async def test_queued_and_running_jobs_stay_however_old(
    ingest_db: Database, tmp_path: Path
) -> None:
    feed = write_csv(tmp_path / "feed.csv", "sku,name,price", ["1,A,1.00"])
    queued, running = [await queue_job(ingest_db, "shop", feed) for _ in range(2)]
    await repository.mark_running(ingest_db.reader, running["id"])
    await _age(ingest_db, queued["id"], days=365)
    await _age(ingest_db, running["id"], days=365)

    forgotten = await forget_ended_jobs(ingest_db, keep=KEEP, owned_files=tmp_path)

    assert forgotten.jobs == 0
    assert await _job_ids(ingest_db) == {queued["id"], running["id"]}
    assert feed.exists()


async def test_an_uploaded_file_left_behind_goes_with_its_job(
    run_import: Importer, ingest_db: Database, tmp_path: Path
) -> None:
    uploads = tmp_path / "imports"
    # Run without `owned_files`, as a runner that died before deleting the file would.
    job = await run_import("acme", _upload(uploads), ACME[1])
    kept = Path(job["file_path"])
    assert kept.exists()
    await _age(ingest_db, job["id"])

    forgotten = await forget_ended_jobs(ingest_db, keep=KEEP, owned_files=uploads)

    assert (forgotten.jobs, forgotten.files) == (1, 1)
    assert not kept.exists()


async def test_files_outside_the_upload_directory_are_never_deleted(
    run_import: Importer, ingest_db: Database, tmp_path: Path
) -> None:
    uploads = tmp_path / "imports"
    uploads.mkdir()
    own = shutil.copy(ACME[0], tmp_path / "products.csv")
    # Spelt as if inside the directory: through `..`, and through a symbolic link.
    dotted = uploads / ".." / "dotted.csv"
    shutil.copy(ACME[0], tmp_path / "dotted.csv")
    linked = uploads / "linked.feed"
    linked.symlink_to(shutil.copy(ACME[0], tmp_path / "target.csv"))
    jobs = [await run_import("acme", Path(path), ACME[1]) for path in (own, dotted, linked)]
    for job in jobs:
        await _age(ingest_db, job["id"])

    forgotten = await forget_ended_jobs(ingest_db, keep=KEEP, owned_files=uploads)

    assert (forgotten.jobs, forgotten.files) == (3, 0)
    assert all(Path(job["file_path"]).exists() for job in jobs)
    assert (tmp_path / "target.csv").exists()


async def test_what_the_catalog_keeps_of_a_feed_stays(
    run_import: Importer, ingest_db: Database
) -> None:
    job = await run_import("acme", ACME[0], ACME[1])
    await _age(ingest_db, job["id"])
    catalog = await row_versions(ingest_db)  # products, categories, source records, provenance
    assert any(key.startswith("source:") for key, _ in catalog)
    assert any(key.startswith("provenance:") for key, _ in catalog)

    assert (await forget_ended_jobs(ingest_db, keep=KEEP, owned_files=None)).jobs == 1

    assert await row_versions(ingest_db) == catalog


async def test_rows_an_ended_job_left_staged_go_with_it(
    run_import: Importer, ingest_db: Database, tmp_path: Path
) -> None:
    job = await run_import("shop", write_csv(tmp_path / "feed.csv", "sku,name,price", ["1,A,1"]))
    await ingest_db.reader.execute(
        "INSERT INTO ingest.staged_rows (job_id, row_number, source_key, content_hash, sku, "
        "name, price, currency, attributes) SELECT $1, n, n::text, '\\x00', n::text, 'A', 1, "
        "'EUR', '{}' FROM generate_series(1, 5) n",
        job["id"],
    )
    await _age(ingest_db, job["id"])

    forgotten = await forget_ended_jobs(ingest_db, keep=KEEP, owned_files=None, batch=2)

    assert (forgotten.jobs, forgotten.rows) == (1, 5)
    left = await ingest_db.reader.fetchval("SELECT count(*) FROM ingest.staged_rows")
    assert left == 0


async def test_the_import_runner_of_the_background_work_forgets_ended_jobs(
    run_import: Importer, ingest_db: Database, tmp_path: Path
) -> None:
    settings = make_settings(database_url=ingest_db.url, data_dir=tmp_path)
    job = await run_import("acme", _upload(tmp_path / "imports"), ACME[1])
    await _age(ingest_db, job["id"])
    provider = payment_provider(settings)
    work = {
        name: service
        for service, name in background_work(settings, ingest_db, provider, LocalStock())
    }
    stop = asyncio.Event()
    runner = asyncio.create_task(work["imports"].run(stop))
    try:
        for _ in range(100):
            if not await _job_ids(ingest_db):
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await runner
        await provider.close()

    assert await _job_ids(ingest_db) == set()
    assert not Path(job["file_path"]).exists()


async def test_the_prune_command_forgets_ended_jobs_now(
    run_import: Importer, ingest_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await run_import("acme", ACME[0], ACME[1])
    recent = await run_import("acme", ACME[0], ACME[1])
    await _age(ingest_db, old["id"], days=3)
    monkeypatch.setenv("DATABASE_URL", ingest_db.url)
    # The command runs its own event loop: off this test's loop, in a thread.
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["import", "prune", "--days", "2"])
    assert result.exit_code == 0, result.output
    assert "forgot 1 jobs" in result.output
    assert await _job_ids(ingest_db) == {recent["id"]}


async def test_uploads_no_job_names_go_after_a_grace_period(
    ingest_db: Database, tmp_path: Path
) -> None:
    uploads = tmp_path / "uploads"
    an_hour_ago = time.time() - 3_700

    def upload(*, old: bool) -> Path:
        path = _upload(uploads)
        if old:
            os.utime(path, (an_hour_ago, an_hour_ago))
        return path

    orphan, fresh, named = upload(old=True), upload(old=False), upload(old=True)
    # A job waiting for the runner names this one.
    await queue_job(ingest_db, "acme", named, file_name="named.csv")
    elsewhere = tmp_path / "elsewhere.feed"  # not in the upload directory: not ours
    shutil.copy(ACME[0], elsewhere)
    os.utime(elsewhere, (an_hour_ago, an_hour_ago))

    assert await forget_orphan_uploads(ingest_db, owned_files=uploads) == 1
    assert (orphan.exists(), fresh.exists(), named.exists(), elsewhere.exists()) == (
        False,
        True,
        True,
        True,
    )
    assert await forget_orphan_uploads(ingest_db, owned_files=tmp_path / "missing") == 0
