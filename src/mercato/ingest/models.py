"""The ingest context's tables, in the `ingest` schema.

- `jobs`: one import of one file from one source: where the file is kept, the mapping it
  is read with, its phase (`staging` → `unifying` → `loading` → `done`), its counts, and
  `loaded_through`, the last load batch committed (a resumed job starts after it). An
  ended job goes, with its rejects, `import_retention_days` after it ended (`retention.py`).
- `rejects`: every rejected row, with the field, the rule it broke and the offending value.
- `staged_rows`: the validated rows of a running job, copied in with COPY. Unification
  writes each row's verdict here (its category goes through the job's `category_map`) (`outcome`: create, update, unchanged, duplicate,
  rejected), the product it goes to, and `load_seq` (the row number of the row that carries
  a product's content; batches are ranges of it). Emptied when the job ends.
- `source_records`: the source's own key of every product a source has fed, with the hash
  of the content last applied: the per-source SKU mapping, and why a re-run of the same
  feed writes nothing.
- `provenance`: which source (and at what priority) last set each field of a product.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from mercato.core.tables import schema_metadata, serves

SCHEMA = "ingest"
metadata = schema_metadata(SCHEMA)

JOB_STATUSES = ("queued", "running", "succeeded", "failed")
JOB_PHASES = ("staging", "unifying", "loading", "done")
OUTCOMES = ("staged", "create", "update", "unchanged", "duplicate", "rejected")


def _now(name: str, *, nullable: bool = False) -> Column[object]:
    return Column(
        name,
        DateTime(timezone=True),
        nullable=nullable,
        server_default=None if nullable else func.now(),
    )


jobs = Table(
    "jobs",
    metadata,
    Column("id", UUID(as_uuid=True), server_default=func.gen_random_uuid()),
    Column("source", Text, nullable=False),
    Column("file_name", Text, nullable=False),
    Column("file_path", Text, nullable=False),
    Column("file_size", BigInteger, nullable=False),
    Column("file_sha256", LargeBinary, nullable=False),
    Column("format", Text, nullable=False),
    Column("mapping", JSONB, nullable=False),
    # The feed's category labels and the ids unification resolved them to.
    Column("category_map", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("dry_run", Boolean, nullable=False, server_default=text("false")),
    Column("status", Text, nullable=False, server_default=text("'queued'")),
    Column("phase", Text, nullable=False, server_default=text("'staging'")),
    Column("rows_read", Integer, nullable=False, server_default=text("0")),
    Column("rows_rejected", Integer, nullable=False, server_default=text("0")),
    Column("rows_unchanged", Integer, nullable=False, server_default=text("0")),
    Column("planned_creates", Integer, nullable=False, server_default=text("0")),
    Column("planned_updates", Integer, nullable=False, server_default=text("0")),
    Column("products_created", Integer, nullable=False, server_default=text("0")),
    Column("products_updated", Integer, nullable=False, server_default=text("0")),
    Column("categories_created", Integer, nullable=False, server_default=text("0")),
    Column("loaded_through", Integer, nullable=False, server_default=text("0")),
    # The load's batches (of `batch_size` products, numbered from 0) already committed:
    # batches run on several connections at once and finish in any order.
    Column("batch_size", Integer, nullable=True),
    Column("loaded_batches", ARRAY(Integer), nullable=False, server_default=text("'{}'")),
    Column("error_code", Text, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("created_by", UUID(as_uuid=True), nullable=True),
    Column("version", Integer, nullable=False, server_default=text("1")),
    _now("created_at"),
    _now("updated_at"),
    _now("started_at", nullable=True),
    _now("finished_at", nullable=True),
    CheckConstraint(f"status IN {JOB_STATUSES}", name="status_known"),
    CheckConstraint(f"phase IN {JOB_PHASES}", name="phase_known"),
    CheckConstraint("format IN ('csv', 'json', 'ndjson')", name="format_known"),
    PrimaryKeyConstraint(
        "id", info=serves("`GET /imports/{id}`; every step of a running job updates its row")
    ),
    Index(
        "ix_jobs_newest",
        text("created_at DESC"),
        text("id DESC"),
        info=serves("`GET /imports`: newest first, keyset on `(created_at, id)`"),
    ),
    Index(
        "ix_jobs_unfinished",
        "created_at",
        postgresql_where=text("status IN ('queued', 'running')"),
        info=serves("the import runner: queued and interrupted jobs, oldest first"),
    ),
    Index(
        "ix_jobs_ended",
        "finished_at",
        postgresql_where=text("status IN ('succeeded', 'failed')"),
        info=serves("retention: `ended_jobs` (`… AND finished_at < $1 ORDER BY finished_at`)"),
    ),
)

rejects = Table(
    "rejects",
    metadata,
    Column("job_id", UUID(as_uuid=True), nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("seq", SmallInteger, nullable=False),
    Column("field", Text, nullable=False),
    Column("rule", Text, nullable=False),
    Column("value", Text, nullable=True),
    Column("message", Text, nullable=False),
    PrimaryKeyConstraint(
        "job_id",
        "row_number",
        "seq",
        info=serves(
            "`GET /imports/{id}/rejects` and `rejects.csv`: a job's rejects in row order, "
            "keyset on `(row_number, seq)`; deleting a job's rejects"
        ),
    ),
)

# UNLOGGED: no WAL for rows that live only while their job runs. A PostgreSQL crash empties
# the table; the job then stages its file again, and the rows it had already loaded come
# back `unchanged` (their content hashes are recorded), so nothing is loaded twice.
staged_rows = Table(
    "staged_rows",
    metadata,
    Column("job_id", UUID(as_uuid=True), nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("source_key", Text, nullable=False),
    Column("content_hash", LargeBinary, nullable=False),
    Column("sku", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("brand", Text, nullable=True),
    Column("gtin", Text, nullable=True),
    Column("mpn", Text, nullable=True),
    Column("price", Numeric(12, 2), nullable=False),
    Column("currency", Text, nullable=False),
    Column("category", Text, nullable=True),
    Column("inventory_count", Integer, nullable=True),
    Column("is_active", Boolean, nullable=True),  # null: the feed does not say
    Column("attributes", Text, nullable=False),
    Column("product_id", UUID(as_uuid=True), nullable=True),
    Column("outcome", Text, nullable=False, server_default=text("'staged'")),
    Column("load_seq", Integer, nullable=True),
    CheckConstraint(f"outcome IN {OUTCOMES}", name="outcome_known"),
    PrimaryKeyConstraint(
        "job_id",
        "row_number",
        info=serves("unification: a staged row by `(job_id, row_number)`; a job's rows"),
    ),
    Index(
        "ix_staged_rows_load_seq",
        "job_id",
        "load_seq",
        postgresql_where=text("load_seq IS NOT NULL"),
        info=serves(
            "loading: a batch `load_seq > $after AND load_seq <= $through`; "
            "`max(load_seq)` of a job"
        ),
    ),
    Index(
        "ix_staged_rows_product",
        "job_id",
        "product_id",
        info=serves("loading: every row (source key) that feeds the batch's products"),
    ),
    prefixes=["UNLOGGED"],
)

source_records = Table(
    "source_records",
    metadata,
    Column("source", Text, nullable=False),
    Column("source_key", Text, nullable=False),
    Column("product_id", UUID(as_uuid=True), nullable=False),
    Column("content_hash", LargeBinary, nullable=False),
    _now("updated_at"),
    PrimaryKeyConstraint(
        "source",
        "source_key",
        info=serves(
            "unification: unchanged rows (same content hash) and matching by the source's "
            "own key; the upsert of each loaded batch"
        ),
    ),
    Index(
        "ix_source_records_product_id",
        "product_id",
        info=serves("the sources that feed a product (which keys map to it)"),
    ),
)

provenance = Table(
    "provenance",
    metadata,
    Column("product_id", UUID(as_uuid=True), nullable=False),
    # {"<field>": ["<source>", <priority>], ...}
    Column("fields", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _now("updated_at"),
    PrimaryKeyConstraint(
        "product_id", info=serves("loading: a product's provenance, joined per merged row")
    ),
)
