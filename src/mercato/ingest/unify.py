"""Unification: decide, set-based, what each staged row does to the catalog.

One transaction over the job's staged rows, in this order:
1. a source key seen earlier in the file: the later row is rejected (`duplicate_key`);
2. a row whose content hash equals what this source last applied: `unchanged`, no write;
3. categories resolved (created if the mapping says so); unresolvable rows rejected;
4. matching to existing products: by GTIN (in GTIN-14 form), then brand + MPN, then the
   source's own key (`source_records`), then a row sharing its GTIN or brand + MPN with a
   row so matched (the same product); a row matched to a deleted product is rejected;
5. rows that match nothing and whose SKU is taken are rejected (`sku_taken`); the others are
   grouped (same GTIN, or same brand + MPN, is one new product) and given new product ids;
6. per product, the last row of the file carries its content (its `load_seq` is its row
   number: the load batches are ranges of it); every row's source key maps to the product.

Reading `catalog.products` here is the matching the catalog grants the import (ADR 0041).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from mercato.ingest import categories
from mercato.ingest.errors import TooManyCategories
from mercato.ingest.mapping import MappingSpec

GTIN14 = "lpad({0}, 14, '0')"
# What makes rows of one feed the same product: the GTIN (GTIN-14 form), else brand + MPN.
SAME_PRODUCT_KEY = (
    f"coalesce('g' || {GTIN14.format('{0}gtin')}, CASE WHEN {{0}}brand IS NOT NULL AND "
    "{0}mpn IS NOT NULL THEN 'm' || lower({0}brand) || chr(31) || {0}mpn END)"
)


@dataclass(frozen=True, slots=True)
class Plan:
    creates: int
    updates: int
    unchanged: int
    rejected: int
    categories_created: int
    category_map: dict[str, str]  # label → category id, for the load


async def _reject(
    conn: asyncpg.Connection,
    job_id: uuid.UUID,
    where: str,
    field: str,
    rule: str,
    value: str,
    message: str,
    *args: object,
) -> int:
    """Mark staged rows matching `where` rejected, recording why (all SQL fragments here are
    constants of this module; values are bind parameters)."""
    field_param, rule_param = len(args) + 2, len(args) + 3
    rows = await conn.fetch(
        f"WITH rejected AS (UPDATE ingest.staged_rows s SET outcome = 'rejected' "
        f"WHERE s.job_id = $1 AND s.outcome = 'staged' AND {where} "
        f"RETURNING s.row_number, {value} AS value, {message} AS message) "
        f"INSERT INTO ingest.rejects (job_id, row_number, seq, field, rule, value, message) "
        f"SELECT $1, row_number, 1, ${field_param}, ${rule_param}, left(value, 200), message "
        f"FROM rejected RETURNING row_number",
        job_id,
        *args,
        field,
        rule,
    )
    return len(rows)


async def unify(
    conn: asyncpg.Connection,
    job_id: uuid.UUID,
    source: str,
    spec: MappingSpec,
    *,
    dry_run: bool,
) -> Plan:
    # Freshly copied rows have no statistics yet: without them the planner takes the staged
    # rows for a handful and joins them by nested loops (minutes instead of seconds).
    await conn.execute("ANALYZE ingest.staged_rows")
    rejected = await _reject(
        conn, job_id,
        "s.row_number IN (SELECT row_number FROM (SELECT row_number, row_number() OVER "
        "(PARTITION BY source_key ORDER BY row_number) AS nth FROM ingest.staged_rows "
        "WHERE job_id = $1) d WHERE nth > 1)",
        "sku", "duplicate_key", "s.source_key",
        "'the same source key appears on an earlier row'",
    )  # fmt: skip
    unchanged = await conn.fetchval(
        "WITH same AS (UPDATE ingest.staged_rows s SET outcome = 'unchanged', "
        "product_id = r.product_id FROM ingest.source_records r "
        "WHERE s.job_id = $1 AND s.outcome = 'staged' AND r.source = $2 "
        "AND r.source_key = s.source_key AND r.content_hash = s.content_hash RETURNING 1) "
        "SELECT count(*) FROM same",
        job_id,
        source,
    )
    category_map, categories_created, refused = await _resolve_categories(
        conn, job_id, spec, dry_run=dry_run
    )
    rejected += refused
    await _match(conn, job_id, source)
    rejected += await _reject(
        conn, job_id,
        "s.product_id IS NOT NULL AND EXISTS (SELECT 1 FROM catalog.products p "
        "WHERE p.id = s.product_id AND p.deleted_at IS NOT NULL)",
        "sku", "product_deleted", "s.source_key",
        "'this source key belongs to a deleted product; restore it to update it'",
    )  # fmt: skip
    rejected += await _reject(
        conn, job_id,
        "s.product_id IS NULL AND EXISTS (SELECT 1 FROM catalog.products p WHERE p.sku = s.sku)",
        "sku", "sku_taken", "s.sku",
        "'another product already has this SKU (set sku_prefix in the mapping?)'",
    )  # fmt: skip
    creates, updates = await _plan(conn, job_id)
    # The load reads batches by load_seq, which the statistics have not seen yet.
    await conn.execute("ANALYZE ingest.staged_rows")
    return Plan(creates, updates, unchanged, rejected, categories_created, category_map)


async def _resolve_categories(
    conn: asyncpg.Connection, job_id: uuid.UUID, spec: MappingSpec, *, dry_run: bool
) -> tuple[dict[str, str], int, int]:
    """(label → category id, categories created, rows rejected). The map goes with the job
    to the load: cheaper than writing an id into every staged row."""
    labels = [
        row["category"]
        for row in await conn.fetch(
            "SELECT DISTINCT category FROM ingest.staged_rows "
            "WHERE job_id = $1 AND outcome = 'staged' AND category IS NOT NULL "
            f"LIMIT {categories.MAX_CATEGORY_LABELS + 1}",
            job_id,
        )
    ]
    if len(labels) > categories.MAX_CATEGORY_LABELS:
        raise TooManyCategories(categories.MAX_CATEGORY_LABELS)
    if not labels:
        return {}, 0, 0
    resolution = await categories.resolve(conn, labels, spec.categories, create=not dry_run)
    category_map = {label: str(i) for label, i in resolution.ids.items() if i is not None}
    refused = 0
    for rule in sorted({r.rule for r in resolution.refused.values()}):
        labels_for_rule = [label for label, r in resolution.refused.items() if r.rule == rule]
        messages = [resolution.refused[label].message for label in labels_for_rule]
        refused += await _reject(
            conn, job_id,
            "s.category = ANY($2::text[])",
            "category", rule, "s.category",
            "(SELECT m.message FROM unnest($2::text[], $3::text[]) AS m(label, message) "
            "WHERE m.label = s.category)",
            labels_for_rule, messages,
        )  # fmt: skip
    return category_map, resolution.created, refused


async def _match(conn: asyncpg.Connection, job_id: uuid.UUID, source: str) -> None:
    # By GTIN: the oldest live product with that barcode.
    await conn.execute(
        "UPDATE ingest.staged_rows s SET product_id = m.id FROM ("
        "  SELECT DISTINCT ON (s2.row_number) s2.row_number, p.id"
        "  FROM ingest.staged_rows s2 JOIN catalog.products p"
        f"   ON {GTIN14.format('p.gtin')} = {GTIN14.format('s2.gtin')}"
        "   AND p.gtin IS NOT NULL AND p.deleted_at IS NULL"
        "  WHERE s2.job_id = $1 AND s2.outcome = 'staged' AND s2.gtin IS NOT NULL"
        "  ORDER BY s2.row_number, p.created_at, p.id) m "
        "WHERE s.job_id = $1 AND s.row_number = m.row_number",
        job_id,
    )
    # By brand + manufacturer part number.
    await conn.execute(
        "UPDATE ingest.staged_rows s SET product_id = m.id FROM ("
        "  SELECT DISTINCT ON (s2.row_number) s2.row_number, p.id"
        "  FROM ingest.staged_rows s2 JOIN catalog.products p"
        "   ON lower(p.brand) = lower(s2.brand) AND p.mpn = s2.mpn"
        "   AND p.mpn IS NOT NULL AND p.deleted_at IS NULL"
        "  WHERE s2.job_id = $1 AND s2.outcome = 'staged' AND s2.product_id IS NULL"
        "   AND s2.brand IS NOT NULL AND s2.mpn IS NOT NULL"
        "  ORDER BY s2.row_number, p.created_at, p.id) m "
        "WHERE s.job_id = $1 AND s.row_number = m.row_number",
        job_id,
    )
    # By the source's own key, for products it fed before.
    await conn.execute(
        "UPDATE ingest.staged_rows s SET product_id = r.product_id "
        "FROM ingest.source_records r WHERE s.job_id = $1 AND s.outcome = 'staged' "
        "AND s.product_id IS NULL AND r.source = $2 AND r.source_key = s.source_key",
        job_id,
        source,
    )
    # Within the file: a row that matched nothing but shares its key with a row matched to
    # a live product is that product too (else it would be created beside it, a duplicate).
    await conn.execute(
        "UPDATE ingest.staged_rows s SET product_id = m.product_id FROM ("
        f"  SELECT {SAME_PRODUCT_KEY.format('s2.')} AS same_key,"
        "   min(s2.product_id::text)::uuid AS product_id"
        "  FROM ingest.staged_rows s2 JOIN catalog.products p"
        "   ON p.id = s2.product_id AND p.deleted_at IS NULL"
        "  WHERE s2.job_id = $1 AND s2.outcome = 'staged' AND (s2.gtin IS NOT NULL"
        "   OR (s2.brand IS NOT NULL AND s2.mpn IS NOT NULL))"
        "  GROUP BY 1) m "
        "WHERE s.job_id = $1 AND s.outcome = 'staged' AND s.product_id IS NULL"
        f" AND {SAME_PRODUCT_KEY.format('s.')} = m.same_key",
        job_id,
    )


async def _plan(conn: asyncpg.Connection, job_id: uuid.UUID) -> tuple[int, int]:
    """One pass over the rows still `staged` (matched to a product or not): new products
    for the unmatched (rows sharing a GTIN, or a brand + MPN, are one product, whose id is
    derived from the job and its first row, so a re-run of this step gives the same ids),
    `create` or `update`, and `load_seq` (the row's own number) on the last row of each
    product. Groups are found by hash aggregation of the keys that repeat: most rows are
    alone in theirs, and sorting a million rows by key three times cost more than the rest
    of unification."""
    counts = await conn.fetchrow(
        "WITH pending AS ("
        "  SELECT row_number, product_id, product_id IS NULL AS is_new,"
        f"   coalesce({SAME_PRODUCT_KEY.format('')}, 'r' || row_number) AS unify_key"
        "  FROM ingest.staged_rows WHERE job_id = $1 AND outcome = 'staged'),"
        " shared_keys AS (SELECT unify_key, min(row_number) AS head FROM pending"
        "  WHERE is_new GROUP BY unify_key HAVING count(*) > 1),"
        " targeted AS (SELECT p.row_number, p.is_new, coalesce(p.product_id,"
        "   md5($1::text || '/' || coalesce(k.head, p.row_number))::uuid) AS target"
        "  FROM pending p LEFT JOIN shared_keys k ON p.is_new AND k.unify_key = p.unify_key),"
        " shared_targets AS (SELECT target, max(row_number) AS last FROM targeted"
        "  GROUP BY target HAVING count(*) > 1),"
        " planned AS (UPDATE ingest.staged_rows s SET product_id = t.target,"
        "   outcome = CASE WHEN t.is_new THEN 'create' ELSE 'update' END,"
        "   load_seq = CASE WHEN st.last IS NULL OR st.last = t.row_number"
        "    THEN t.row_number END"
        "  FROM targeted t LEFT JOIN shared_targets st ON st.target = t.target"
        "  WHERE s.job_id = $1 AND s.row_number = t.row_number"
        "  RETURNING s.outcome, s.load_seq) "
        "SELECT count(*) FILTER (WHERE outcome = 'create' AND load_seq IS NOT NULL) AS creates,"
        " count(*) FILTER (WHERE outcome = 'update' AND load_seq IS NOT NULL) AS updates"
        " FROM planned",
        job_id,
    )
    return counts["creates"], counts["updates"]
