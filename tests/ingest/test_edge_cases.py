"""Feeds at the edges: keys of the wrong JSON type, rows of one feed that meet on a
product, and other input that must end as a reject rather than a stuck job."""

from __future__ import annotations

from pathlib import Path

import pytest

from mercato.core.database import Database
from mercato.ingest import staging
from tests.ingest.conftest import Importer, products, rejects, write_csv


async def test_a_key_that_is_not_text_or_a_whole_number_is_rejected(
    run_import: Importer, ingest_db: Database, tmp_path: Path
) -> None:
    feed = tmp_path / "feed.ndjson"
    feed.write_bytes(
        b'{"sku": true, "name": "A", "price": 1}\n'
        b'{"sku": 12.5, "name": "B", "price": 1}\n'
        b'{"sku": {"id": 1}, "name": "C", "price": 1}\n'
        b'{"sku": 7, "name": "D", "price": 1}\n'
    )
    job = await run_import("shop", feed)
    assert job["status"] == "succeeded"
    assert [(row, field, rule) for row, field, rule, _ in await rejects(ingest_db, job["id"])] == [
        (1, "sku", "string_type"),
        (2, "sku", "string_type"),
        (3, "sku", "string_type"),
    ]
    assert sorted(await products(ingest_db)) == ["7"]


async def test_a_new_row_sharing_a_barcode_with_a_matched_row_joins_its_product(
    run_import: Importer, ingest_db: Database, tmp_path: Path
) -> None:
    first = write_csv(tmp_path / "a.csv", "sku,name,price,brand,mpn", ["1,Toaster,1.00,Bosch,X1"])
    await run_import("supplier", first)
    # Row 2 is matched to the toaster by brand + MPN and brings its barcode; row 1 has only
    # the barcode: both describe the toaster, and nothing new is created.
    second = write_csv(
        tmp_path / "b.csv",
        "sku,name,price,brand,mpn,gtin",
        ["2,Barcode only,2.00,,,4006381333931", "3,Matched,3.00,Bosch,X1,04006381333931"],
    )
    job = await run_import("content", second)
    assert (job["planned_creates"], job["planned_updates"]) == (0, 1)
    (toaster,) = (await products(ingest_db)).values()
    assert (toaster["name"], toaster["gtin"]) == ("Matched", "04006381333931")
    keys = await ingest_db.reader.fetch(
        "SELECT source_key FROM ingest.source_records WHERE source = 'content' "
        "AND product_id = $1 ORDER BY source_key",
        toaster["id"],
    )
    assert [k["source_key"] for k in keys] == ["2", "3"]


async def test_an_attribute_of_the_wrong_type_is_one_reject_naming_the_attribute(
    run_import: Importer, ingest_db: Database, tmp_path: Path
) -> None:
    feed = tmp_path / "feed.json"
    feed.write_text(
        '[{"sku": "1", "name": "A", "price": 1, "spec": {"nested": true}},'
        ' {"sku": "2", "name": "B", "price": 1, "spec": ["a", "list"]},'
        ' {"sku": "3", "name": "C", "price": 1, "spec": "' + "x" * 501 + '"},'
        ' {"sku": "4", "name": "D", "price": 1, "spec": 2.5}]'
    )
    job = await run_import("shop", feed, '[attributes]\nspec = "spec"\n')
    assert [(row, field, rule) for row, field, rule, _ in await rejects(ingest_db, job["id"])] == [
        (1, "attributes.spec", "attribute_type"),
        (2, "attributes.spec", "attribute_type"),
        (3, "attributes.spec", "string_too_long"),
    ]
    assert sorted(await products(ingest_db)) == ["4"]


async def test_an_unforeseen_error_while_staging_fails_the_job_instead_of_leaving_it_running(
    run_import: Importer, ingest_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A job left "running" is resumed by every pass of the runner, fails the same way each
    # time, and holds up every job queued after it. Staging has not touched the catalog, so
    # the job fails as a broken file does. (A row the code cannot handle stands in here for
    # bugs such as the ones above.)
    def broken(*args: object) -> object:
        raise RuntimeError("a row the code cannot handle")

    monkeypatch.setattr(staging, "stage_record", broken)
    feed = write_csv(tmp_path / "feed.csv", "sku,name,price", ["1,A,1.00"])
    job = await run_import("shop", feed)
    assert (job["status"], job["error_code"]) == ("failed", "IMPORT_STAGING_FAILED")
    assert await products(ingest_db) == {}
