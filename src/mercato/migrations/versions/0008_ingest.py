"""Ingest: import jobs, their rejects and staged rows, per-source keys and provenance;
the catalog's manufacturer part number (its indexes come in 0009, built concurrently).

Lookups: jobs newest first (the staff list, keyset) and unfinished ones (the runner);
rejects by job in row order (primary key); staged rows by load batch and by product;
source records by (source, key) (primary key) and by product; provenance by product.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS ingest")
    op.create_table(
        "jobs",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("file_path", sa.Text(), nullable=False),
        sa.Column("file_size", sa.BigInteger(), nullable=False),
        sa.Column("file_sha256", sa.LargeBinary(), nullable=False),
        sa.Column("format", sa.Text(), nullable=False),
        sa.Column("mapping", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "category_map",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("dry_run", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'queued'"), nullable=False),
        sa.Column("phase", sa.Text(), server_default=sa.text("'staging'"), nullable=False),
        sa.Column("rows_read", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("rows_rejected", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("rows_unchanged", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("planned_creates", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("planned_updates", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("products_created", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("products_updated", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("categories_created", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("loaded_through", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("batch_size", sa.Integer(), nullable=True),
        sa.Column(
            "loaded_batches",
            postgresql.ARRAY(sa.Integer()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("error_code", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "format IN ('csv', 'json', 'ndjson')", name=op.f("ck_jobs_format_known")
        ),
        sa.CheckConstraint(
            "phase IN ('staging', 'unifying', 'loading', 'done')", name=op.f("ck_jobs_phase_known")
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed')",
            name=op.f("ck_jobs_status_known"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        schema="ingest",
    )
    op.create_index(
        "ix_jobs_newest",
        "jobs",
        [sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        unique=False,
        schema="ingest",
    )
    op.create_index(
        "ix_jobs_unfinished",
        "jobs",
        ["created_at"],
        unique=False,
        schema="ingest",
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_table(
        "provenance",
        sa.Column("product_id", sa.UUID(), nullable=False),
        sa.Column(
            "fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_provenance")),
        schema="ingest",
    )
    op.create_table(
        "rejects",
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("seq", sa.SmallInteger(), nullable=False),
        sa.Column("field", sa.Text(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "row_number", "seq", name=op.f("pk_rejects")),
        schema="ingest",
    )
    op.create_table(
        "source_records",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("source_key", sa.Text(), nullable=False),
        sa.Column("product_id", sa.UUID(), nullable=False),
        sa.Column("content_hash", sa.LargeBinary(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("source", "source_key", name=op.f("pk_source_records")),
        schema="ingest",
    )
    op.create_index(
        "ix_source_records_product_id",
        "source_records",
        ["product_id"],
        unique=False,
        schema="ingest",
    )
    op.create_table(
        "staged_rows",
        sa.Column("job_id", sa.UUID(), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("source_key", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.LargeBinary(), nullable=False),
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("brand", sa.Text(), nullable=True),
        sa.Column("gtin", sa.Text(), nullable=True),
        sa.Column("mpn", sa.Text(), nullable=True),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("category", sa.Text(), nullable=True),
        sa.Column("inventory_count", sa.Integer(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=True),
        sa.Column("attributes", sa.Text(), nullable=False),
        sa.Column("product_id", sa.UUID(), nullable=True),
        sa.Column("outcome", sa.Text(), server_default=sa.text("'staged'"), nullable=False),
        sa.Column("load_seq", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('staged', 'create', 'update', 'unchanged', 'duplicate', 'rejected')",
            name=op.f("ck_staged_rows_outcome_known"),
        ),
        sa.PrimaryKeyConstraint("job_id", "row_number", name=op.f("pk_staged_rows")),
        schema="ingest",
        prefixes=["UNLOGGED"],
    )
    op.create_index(
        "ix_staged_rows_load_seq",
        "staged_rows",
        ["job_id", "load_seq"],
        unique=False,
        schema="ingest",
        postgresql_where=sa.text("load_seq IS NOT NULL"),
    )
    op.create_index(
        "ix_staged_rows_product",
        "staged_rows",
        ["job_id", "product_id"],
        unique=False,
        schema="ingest",
    )
    op.add_column(
        "products", sa.Column("mpn", sa.String(length=64), nullable=True), schema="catalog"
    )


def downgrade() -> None:
    op.drop_column("products", "mpn", schema="catalog")
    op.drop_index("ix_staged_rows_product", table_name="staged_rows", schema="ingest")
    op.drop_index(
        "ix_staged_rows_load_seq",
        table_name="staged_rows",
        schema="ingest",
        postgresql_where=sa.text("load_seq IS NOT NULL"),
    )
    op.drop_table("staged_rows", schema="ingest")
    op.drop_index("ix_source_records_product_id", table_name="source_records", schema="ingest")
    op.drop_table("source_records", schema="ingest")
    op.drop_table("rejects", schema="ingest")
    op.drop_table("provenance", schema="ingest")
    op.drop_index(
        "ix_jobs_unfinished",
        table_name="jobs",
        schema="ingest",
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.drop_index("ix_jobs_newest", table_name="jobs", schema="ingest")
    op.drop_table("jobs", schema="ingest")
    op.execute("DROP SCHEMA IF EXISTS ingest")
