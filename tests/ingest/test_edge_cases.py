"""Feeds at the edges: keys of the wrong JSON type, rows of one feed that meet on a
product, and other input that must end as a reject rather than a stuck job."""

from __future__ import annotations

from pathlib import Path

from mercato.core.database import Database
from tests.ingest.conftest import Importer, products, rejects


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
