"""Loading one batch of planned products into the catalog, set-based, in the caller's
transaction (the job commits each batch with its events and its progress).

- New products are inserted from their carrier rows (`ON CONFLICT DO NOTHING`: a SKU taken
  since unification turns the row into a `sku_taken` reject, not a failed batch).
- Existing products are merged field by field: a field this row provides replaces the
  product's value when this source's priority for it is at least that of the source that
  set it last (recorded in `ingest.provenance`; no record counts as 0), or when this source
  set it last. The currency goes with the price. Attributes are merged key by key.
  Products are locked first, and only rows whose values really change are written.
- Every source key that fed a loaded product is recorded with its content hash.
- Events (`product.created`, `product.updated`) are written by the same statements, with
  the catalog's payload computed by PostgreSQL (`product_payload_sql`): no row makes a trip
  through Python.

Writing `catalog.products` here is the bulk path the catalog grants the import (ADR 0041):
the same columns, constraints and events as its own use cases.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from mercato.catalog import PRODUCT_COLUMNS, product_payload_sql
from mercato.events import OUTBOX_INSERT
from mercato.ingest.mapping import MappingSpec

# (provenance name, staged column, product column); the index is the priority's in $5[].
MERGED = (
    ("name", "name", "name"),
    ("description", "description", "description"),
    ("brand", "brand", "brand"),
    ("gtin", "gtin", "gtin"),
    ("mpn", "mpn", "mpn"),
    ("price", "price", "price"),
    ("category", "category_ref", "category_id"),
    ("is_active", "is_active", "is_active"),
    ("attributes", "attributes", "attributes"),
)
_RETURNED = ", ".join(f"p.{column.strip()}" for column in PRODUCT_COLUMNS.split(","))
# $1 job, $2 source, $3/$4 the load_seq window, $5 priorities, $6 category map, $7 trace
_WINDOW = "s.job_id = $1 AND s.load_seq > $3 AND s.load_seq <= $4"
_STAGED = "s.*, ($6::jsonb ->> s.category)::uuid AS category_ref"


def _events(event_type: str, rows: str) -> str:
    """Each row of `rows` (products just written) as a catalog event, in this statement."""
    return (
        f"{OUTBOX_INSERT} SELECT gen_random_uuid(), '{event_type}', 1, 'product', p.id::text,"
        f" p.version, $7::jsonb, {product_payload_sql('p')} FROM {rows} p"
    )


def _provided(staged: str) -> str:
    return f"s.{staged} <> '{{}}'" if staged == "attributes" else f"s.{staged} IS NOT NULL"


def _won(name: str, staged: str, index: int) -> str:
    return (
        f"({_provided(staged)} AND (coalesce((s.prov -> '{name}' ->> 1)::int, 0)"
        f" <= ($5::int[])[{index}] OR s.prov -> '{name}' ->> 0 = $2)) AS won_{name}"
    )


def _new_value(name: str, staged: str, column: str) -> str:
    if name == "attributes":
        return "CASE WHEN w.won_attributes THEN p.attributes || w.attributes::jsonb ELSE p.attributes END"
    return f"CASE WHEN w.won_{name} THEN w.{staged} ELSE p.{column} END"


def _provenance_entry(name: str, condition: str, index: int) -> str:
    return f"'{name}', CASE WHEN {condition} THEN jsonb_build_array($2::text, ($5::int[])[{index}]) END"


_COLUMNS = [column for _, _, column in MERGED] + ["currency"]
MERGE_SQL = (
    f"WITH incoming AS (SELECT {_STAGED}, coalesce(pv.fields, '{{}}'::jsonb) AS prov"
    "  FROM ingest.staged_rows s LEFT JOIN ingest.provenance pv ON pv.product_id = s.product_id"
    f"  WHERE {_WINDOW} AND s.outcome = 'update'),"
    " wins AS (SELECT s.*, "
    + ", ".join(_won(name, staged, i) for i, (name, staged, _) in enumerate(MERGED, 1))
    + " FROM incoming s),"
    # LATERAL: each product by its key, whatever the statistics say about the table.
    " decided AS (SELECT p.id, w.prov, "
    + ", ".join(f"{_new_value(n, s, c)} AS {c}" for n, s, c in MERGED)
    + ", CASE WHEN w.won_price THEN w.currency ELSE p.currency END AS currency, "
    "jsonb_strip_nulls(jsonb_build_object("
    + ", ".join(_provenance_entry(n, f"w.won_{n}", i) for i, (n, _, _) in enumerate(MERGED, 1))
    + ")) AS won"
    "  FROM wins w CROSS JOIN LATERAL (SELECT * FROM catalog.products p"
    "   WHERE p.id = w.product_id AND p.deleted_at IS NULL FOR UPDATE) p),"
    " provenance AS (INSERT INTO ingest.provenance AS pv (product_id, fields)"
    "  SELECT id, won FROM decided WHERE won <> '{}' AND NOT prov @> won"
    "  ON CONFLICT (product_id) DO UPDATE SET fields = pv.fields || EXCLUDED.fields,"
    "  updated_at = now()),"
    " changed AS (UPDATE catalog.products p SET "
    + ", ".join(f"{c} = d.{c}" for c in _COLUMNS)
    + ", version = p.version + 1, updated_at = clock_timestamp() FROM decided d "
    f"WHERE p.id = d.id AND ({', '.join(f'p.{c}' for c in _COLUMNS)}) "
    f"IS DISTINCT FROM ({', '.join(f'd.{c}' for c in _COLUMNS)}) "
    f"RETURNING {_RETURNED}),"
    f" events AS ({_events('product.updated', 'changed')}) "
    "SELECT count(*) FROM changed"
)

CREATE_SQL = (
    f"WITH carriers AS (SELECT {_STAGED} FROM ingest.staged_rows s"
    f"  WHERE {_WINDOW} AND s.outcome = 'create'),"
    " created AS (INSERT INTO catalog.products AS p (id, sku, name, description, brand, gtin,"
    "  mpn, price, currency, category_id, inventory_count, attributes, is_active)"
    "  SELECT product_id, sku, name, description, brand, gtin, mpn, price, currency,"
    "  category_ref, coalesce(inventory_count, 0), attributes::jsonb, coalesce(is_active, true)"
    "  FROM carriers ORDER BY load_seq ON CONFLICT DO NOTHING"
    f"  RETURNING {_RETURNED}),"
    # Every carrier's provenance, not only the inserted ones: joining two CTEs would be a
    # nested loop; a product lost to a SKU taken meanwhile has its row removed with it.
    " provenance AS (INSERT INTO ingest.provenance (product_id, fields)"
    "  SELECT s.product_id, jsonb_strip_nulls(jsonb_build_object("
    + ", ".join(_provenance_entry(n, _provided(s), i) for i, (n, s, _) in enumerate(MERGED, 1))
    + ")) FROM carriers s"
    "  ON CONFLICT (product_id) DO UPDATE SET fields = EXCLUDED.fields, updated_at = now()),"
    f" events AS ({_events('product.created', 'created')}) "
    "SELECT count(*) FROM created"
)


# Every staged row that fed one of the batch's products, found through each product's key
# (LATERAL; OFFSET 0 keeps the planner from flattening it into a join). As a join, the
# planner hashed the batch's products and scanned every staged row of the job for each
# batch until the feed was large enough to tip it over to the index (at 100,000 rows:
# 77 ms of a 150 ms statement, per batch; at 1,000,000 it used the index).
SOURCE_RECORDS_SQL = (
    "INSERT INTO ingest.source_records AS r (source, source_key, product_id, content_hash)"
    " SELECT $2, s.source_key, s.product_id, s.content_hash FROM (SELECT DISTINCT product_id"
    "  FROM ingest.staged_rows WHERE job_id = $1 AND load_seq > $3 AND load_seq <= $4) AS w"
    " CROSS JOIN LATERAL (SELECT source_key, product_id, content_hash FROM ingest.staged_rows s"
    "  WHERE s.job_id = $1 AND s.product_id = w.product_id"
    "  AND s.outcome IN ('create', 'update') OFFSET 0) AS s "
    "ON CONFLICT (source, source_key) DO UPDATE SET product_id = EXCLUDED.product_id,"
    " content_hash = EXCLUDED.content_hash, updated_at = now()"
)


@dataclass(frozen=True, slots=True)
class BatchResult:
    planned: int  # the products of this batch
    created: int
    updated: int
    rejected: int


async def load_batch(
    conn: asyncpg.Connection,
    job_id: uuid.UUID,
    source: str,
    spec: MappingSpec,
    *,
    after: int,
    through: int,
    category_map: dict[str, str],
) -> BatchResult:
    """Load the products planned with `after < load_seq <= through`, with their events."""
    planned = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE outcome = 'create') AS creates,"
        " count(*) FILTER (WHERE outcome = 'update') AS updates FROM ingest.staged_rows"
        " WHERE job_id = $1 AND load_seq > $2 AND load_seq <= $3",
        job_id,
        after,
        through,
    )
    priorities = [spec.field_priority(name) for name, _, _ in MERGED]
    trace = {"import_job": str(job_id)}
    window = (job_id, source, after, through, priorities, category_map, trace)
    created = await conn.fetchval(CREATE_SQL, *window) if planned["creates"] else 0
    updated = await conn.fetchval(MERGE_SQL, *window) if planned["updates"] else 0
    rejected = 0
    if created < planned["creates"]:
        rejected = await _reject_lost_creates(conn, job_id, after, through)
    await conn.execute(SOURCE_RECORDS_SQL, job_id, source, after, through)
    return BatchResult(planned["creates"] + planned["updates"], created, updated, rejected)


async def _reject_lost_creates(
    conn: asyncpg.Connection, job_id: uuid.UUID, after: int, through: int
) -> int:
    """Planned new products whose SKU another product took after unification."""
    rows = await conn.fetch(
        "WITH lost AS (SELECT product_id FROM ingest.staged_rows s"
        "  WHERE s.job_id = $1 AND s.outcome = 'create' AND s.load_seq > $2"
        "  AND s.load_seq <= $3"
        "  AND NOT EXISTS (SELECT 1 FROM catalog.products p WHERE p.id = s.product_id)),"
        " marked AS (UPDATE ingest.staged_rows s SET outcome = 'rejected' FROM lost"
        "  WHERE s.job_id = $1 AND s.product_id = lost.product_id"
        "  RETURNING s.row_number, s.sku),"
        " forgotten AS (DELETE FROM ingest.provenance WHERE product_id IN"
        "  (SELECT product_id FROM lost)) "
        "INSERT INTO ingest.rejects (job_id, row_number, seq, field, rule, value, message) "
        "SELECT $1, row_number, 1, 'sku', 'sku_taken', sku,"
        " 'another product took this SKU while the import ran' FROM marked "
        "RETURNING row_number",
        job_id,
        after,
        through,
    )
    return len(rows)
