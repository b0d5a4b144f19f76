"""Imports end to end on real PostgreSQL: two differently shaped feeds unified into one
catalog, exact reject reasons, idempotent re-runs, dry runs and broken files."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from mercato.core.database import Database
from tests.ingest.conftest import (
    ACME,
    GLOBEX,
    Importer,
    event_counts,
    products,
    rejects,
    row_versions,
    write_csv,
)


async def test_two_feeds_are_unified_into_one_catalog(
    run_import: Importer, ingest_db: Database
) -> None:
    acme = await run_import("acme", *ACME)
    globex = await run_import("globex", *GLOBEX)
    assert (acme["status"], globex["status"]) == ("succeeded", "succeeded")

    catalog = await products(ingest_db)
    assert sorted(catalog) == ["ACME-A-100", "ACME-A-101", "ACME-A-102", "GLX-9003"]
    kettle = catalog["ACME-A-100"]  # Acme's EAN-13 is Globex's GTIN-14
    assert kettle["name"] == "Electric Kettle, brushed steel, 1.7 litres"  # Globex: 60 > 40
    assert kettle["description"] == "A 2,400 W kettle with limescale filter."
    assert (kettle["price"], kettle["currency"]) == (Decimal("39.99"), "EUR")  # Acme: 90
    assert kettle["category"] == "Kettles"
    assert kettle["inventory_count"] == 25  # stock is set when a product is created only
    assert kettle["attributes"] == {"colour": "silver", "weight_kg": 1.2, "capacity_l": 1.7}
    toaster = catalog["ACME-A-101"]  # matched by brand (any case) + MPN
    assert (toaster["name"], toaster["price"]) == ("Philips Toaster HD2581", Decimal("24.99"))
    assert catalog["ACME-A-102"]["name"] == "Espresso cups (set of 4)"  # Acme only
    frother = catalog["GLX-9003"]  # Globex only; "Coffee" is an alias of "Kettles"
    assert (frother["is_active"], frother["category"]) == (False, "Kettles")

    provenance = await ingest_db.reader.fetchval(
        "SELECT fields FROM ingest.provenance WHERE product_id = $1", kettle["id"]
    )
    assert provenance["name"] == ["globex", 60]
    assert provenance["price"] == ["acme", 90]
    keys = await ingest_db.reader.fetch(
        "SELECT source, source_key FROM ingest.source_records WHERE product_id = $1 "
        "ORDER BY source",
        kettle["id"],
    )
    assert [tuple(k) for k in keys] == [("acme", "A-100"), ("globex", "9001")]

    counts = await event_counts(ingest_db)
    assert counts["product.created"] == 4
    assert counts["product.updated"] == 2
    assert counts["category.created"] == 5  # Home, Kitchen, Kettles, Toasters, Tableware
    assert counts["import.succeeded"] == 2


async def test_priorities_make_the_result_independent_of_the_feeds_order(
    run_import: Importer, ingest_db: Database, tmp_path: Path
) -> None:
    header = "sku,name,price,gtin"
    supplier = write_csv(tmp_path / "a.csv", header, ["1,Plain name,10.00,4006381333931"])
    content = write_csv(tmp_path / "b.csv", header, ["X,Rich name,99.00,4006381333931"])
    supplier_mapping = 'sku_prefix = "S-"\npriority = 10\n[priorities]\nprice = 90'
    content_mapping = 'sku_prefix = "C-"\npriority = 50'
    await run_import("content", content, content_mapping)
    await run_import("supplier", supplier, supplier_mapping)
    (product,) = (await products(ingest_db)).values()
    assert (product["name"], product["price"]) == ("Rich name", Decimal("10.00"))


async def test_every_rejected_row_says_exactly_why(
    run_import: Importer, ingest_db: Database
) -> None:
    acme = await run_import("acme", *ACME)
    globex = await run_import("globex", *GLOBEX)
    assert await rejects(ingest_db, acme["id"]) == [
        (4, "gtin", "gtin_check_digit", "4006381333932"),
        (5, "price", "transform_cents", "abc"),
        (6, "sku", "duplicate_key", "A-101"),
    ]
    assert await rejects(ingest_db, globex["id"]) == [
        (4, "category", "unknown_category", "Garden furniture"),
        (5, "name", "missing", None),
    ]
    assert (acme["rows_read"], acme["rows_rejected"]) == (6, 3)
    assert (globex["rows_read"], globex["rows_rejected"]) == (5, 2)


async def test_rule_violations_of_the_canonical_model_are_reported_per_field(
    run_import: Importer, ingest_db: Database, tmp_path: Path
) -> None:
    feed = write_csv(
        tmp_path / "feed.csv",
        "sku,name,price,currency,gtin",
        [
            "ok-1,Good,1.00,EUR,",
            "bad sku,Bad key,1.00,EUR,",
            "neg,Negative,-1.00,EUR,",
            "cur,Currency,1.00,euro,",
            "long," + "x" * 201 + ",1.00,EUR,",
            "many,Two problems,1.234,EURO,",
        ],
    )
    job = await run_import("shop", feed)
    assert await rejects(ingest_db, job["id"]) == [
        (2, "sku", "string_pattern_mismatch", "bad sku"),
        (3, "price", "greater_than_equal", "-1.00"),
        (4, "currency", "string_pattern_mismatch", "euro"),
        (5, "name", "string_too_long", "x" * 200),
        (6, "price", "decimal_max_places", "1.234"),
        (6, "currency", "string_pattern_mismatch", "EURO"),
    ]
    assert sorted(await products(ingest_db)) == ["ok-1"]


async def test_running_the_same_feed_again_writes_nothing_and_emits_nothing(
    run_import: Importer, ingest_db: Database
) -> None:
    await run_import("acme", *ACME)
    await run_import("globex", *GLOBEX)
    before, events_before = await row_versions(ingest_db), await event_counts(ingest_db)
    again = await run_import("acme", *ACME)
    await run_import("globex", *GLOBEX)
    assert await row_versions(ingest_db) == before
    after = await event_counts(ingest_db)
    catalog_events = ("product.created", "product.updated", "category.created")
    assert {t: after.get(t) for t in catalog_events} == {
        t: events_before.get(t) for t in catalog_events
    }
    assert (again["rows_unchanged"], again["products_updated"], again["products_created"]) == (
        3,
        0,
        0,
    )


async def test_a_changed_row_updates_only_its_product(
    run_import: Importer, ingest_db: Database, tmp_path: Path
) -> None:
    header = "sku,name,price"
    await run_import("shop", write_csv(tmp_path / "1.csv", header, ["a,A,1.00", "b,B,2.00"]))
    job = await run_import("shop", write_csv(tmp_path / "2.csv", header, ["a,A,1.00", "b,B,2.50"]))
    assert (job["rows_unchanged"], job["products_updated"]) == (1, 1)
    catalog = await products(ingest_db)
    assert (catalog["a"]["version"], catalog["b"]["version"]) == (1, 2)
    assert catalog["b"]["price"] == Decimal("2.50")


async def test_a_dry_run_reports_what_would_change_and_changes_nothing(
    run_import: Importer, ingest_db: Database
) -> None:
    before = await row_versions(ingest_db)
    job = await run_import("acme", *ACME, dry_run=True)
    assert job["status"] == "succeeded"
    assert (job["planned_creates"], job["planned_updates"], job["rows_rejected"]) == (3, 0, 3)
    assert job["categories_created"] == 5  # would be created
    assert (job["products_created"], job["products_updated"]) == (0, 0)
    assert await row_versions(ingest_db) == before
    staged = await ingest_db.reader.fetchval("SELECT count(*) FROM ingest.staged_rows")
    assert staged == 0


async def test_rows_sharing_a_barcode_in_one_feed_become_one_product(
    run_import: Importer, ingest_db: Database, tmp_path: Path
) -> None:
    feed = write_csv(
        tmp_path / "feed.csv",
        "sku,name,price,gtin,brand,mpn",
        [
            "1,First,1.00,4006381333931,,",
            "2,Second,2.00,04006381333931,,",
            "3,Third,3.00,,Bosch,X1",
            "4,Fourth,4.00,,BOSCH,X1",
        ],
    )
    job = await run_import("shop", feed)
    catalog = await products(ingest_db)
    assert (job["planned_creates"], len(catalog)) == (2, 2)
    # The last row of a product carries its content.
    assert sorted(p["name"] for p in catalog.values()) == ["Fourth", "Second"]
    mapped = await ingest_db.reader.fetchval("SELECT count(*) FROM ingest.source_records")
    assert mapped == 4


async def test_skus_taken_and_deleted_products_are_rejected(
    run_import: Importer, ingest_db: Database, tmp_path: Path
) -> None:
    await run_import("shop", write_csv(tmp_path / "1.csv", "sku,name,price", ["gone,Gone,1.00"]))
    async with ingest_db.transaction() as conn:
        await conn.execute("UPDATE catalog.products SET deleted_at = now() WHERE sku = 'gone'")
        await conn.execute(
            "INSERT INTO catalog.products (sku, name, price) VALUES ('mine', 'Hand-made', 5)"
        )
    job = await run_import(
        "shop",
        write_csv(
            tmp_path / "2.csv", "sku,name,price", ["gone,Gone again,1.50", "mine,Imported,2"]
        ),
    )
    assert await rejects(ingest_db, job["id"]) == [
        (1, "sku", "product_deleted", "gone"),
        (2, "sku", "sku_taken", "mine"),
    ]
    assert (await products(ingest_db))["mine"]["name"] == "Hand-made"


async def test_a_broken_file_fails_the_job_and_loads_nothing(
    run_import: Importer, ingest_db: Database, tmp_path: Path
) -> None:
    feed = tmp_path / "feed.csv"
    good_rows = "".join(f"{i},Product {i},1.00\n" for i in range(12_000))
    feed.write_bytes(b"sku,name,price\n" + good_rows.encode() + b"broken,Caf\xe9,1.00\n")
    before = await row_versions(ingest_db)
    job = await run_import("shop", feed)
    assert (job["status"], job["error_code"]) == ("failed", "IMPORT_FILE_ENCODING")
    # Decoding runs ahead of parsing, so the row is a lower bound.
    assert "not valid utf-8 (at or after data row" in job["error_message"]
    assert await row_versions(ingest_db) == before
    leftovers = await ingest_db.reader.fetchval(
        "SELECT (SELECT count(*) FROM ingest.staged_rows) + (SELECT count(*) FROM ingest.rejects)"
    )
    assert leftovers == 0
    assert (await event_counts(ingest_db)).get("import.failed") == 1


async def test_unknown_categories_are_created_or_rejected_as_the_mapping_says(
    run_import: Importer, ingest_db: Database, tmp_path: Path
) -> None:
    feed = write_csv(tmp_path / "f.csv", "sku,name,price,category", ["1,A,1,Toys/Lego"])
    rejected = await run_import("shop", feed, '[categories]\nunknown = "reject"')
    assert await rejects(ingest_db, rejected["id"]) == [
        (1, "category", "unknown_category", "Toys/Lego")
    ]
    created = await run_import("shop", feed, '[categories]\nunknown = "create"')
    assert created["categories_created"] == 2
    assert (await products(ingest_db))["1"]["category"] == "Lego"
