"""Catalog: categories (a materialised-path tree) and products.

Index specification (each index names the query it serves; see docs/schema.md):
- ix_categories_path (text_pattern_ops, unique): "a category and its descendants" is
  `path LIKE '<path>%'`, one range scan.
- ix_products_live_newest / _price / _name: whole-catalog listings by each sort, keyset
  pagination `(key, id) < (:key, :id)` walks the index from the cursor, so page 50 costs
  what page 1 costs.
- ix_products_live_category_newest / _price / _name: category pages; the query walks each
  category of the subtree from the cursor (LIMIT n each) and merges, so cost depends on the
  page size and the subtree's width, not on the number of products.
- ix_products_live_brand: the brand filter.
- ix_products_live_search (GIN over the stored, weighted tsvector): full-text search.
- ix_products_gtin: barcode lookups by the import pipeline and staff.
- ix_products_category_id (all rows, deleted ones too): the foreign key's ON DELETE
  RESTRICT check and moving a category's products; without it both scan the table.
All product indexes except the gtin and category_id ones are partial on live rows (not deleted, active):
the public queries use exactly that predicate.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("deleted_at IS NULL AND is_active")
SEARCH_DOCUMENT = (
    "setweight(to_tsvector('english'::regconfig, coalesce(name, '')), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, coalesce(brand, '') || ' ' || sku), 'B') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'C')"
)


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.clock_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.clock_timestamp(),
            nullable=False,
        ),
    ]


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS catalog")
    op.create_table(
        "categories",
        sa.Column("id", sa.UUID(), server_default=sa.func.gen_random_uuid(), nullable=False),
        sa.Column("parent_id", sa.UUID(), nullable=True),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("slug", sa.String(120), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("depth", sa.SmallInteger(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        *_timestamps(),
        sa.CheckConstraint("depth >= 0", name="ck_categories_depth_non_negative"),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["catalog.categories.id"], name="fk_categories_parent_id_categories"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_categories"),
        sa.UniqueConstraint(
            "parent_id",
            "slug",
            name="uq_categories_parent_id_slug",
            postgresql_nulls_not_distinct=True,
        ),
        schema="catalog",
    )
    op.create_index(
        "ix_categories_path",
        "categories",
        ["path"],
        unique=True,
        schema="catalog",
        postgresql_ops={"path": "text_pattern_ops"},
    )

    op.create_table(
        "products",
        sa.Column("id", sa.UUID(), server_default=sa.func.gen_random_uuid(), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("brand", sa.String(100), nullable=True),
        sa.Column("gtin", sa.String(14), nullable=True),
        sa.Column("price", sa.Numeric(12, 2), nullable=False),
        sa.Column("currency", sa.String(3), server_default=sa.text("'USD'"), nullable=False),
        sa.Column("category_id", sa.UUID(), nullable=True),
        sa.Column("inventory_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "attributes", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(SEARCH_DOCUMENT, persisted=True),
            nullable=True,
        ),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        *_timestamps(),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("price >= 0", name="ck_products_price_non_negative"),
        sa.CheckConstraint("inventory_count >= 0", name="ck_products_inventory_non_negative"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="ck_products_currency_iso_4217"),
        sa.CheckConstraint("gtin ~ '^[0-9]{8,14}$'", name="ck_products_gtin_digits"),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["catalog.categories.id"],
            ondelete="RESTRICT",
            name="fk_products_category_id_categories",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_products"),
        sa.UniqueConstraint("sku", name="uq_products_sku"),
        schema="catalog",
    )
    idx = {"schema": "catalog", "postgresql_where": LIVE}
    op.create_index(
        "ix_products_live_newest",
        "products",
        [sa.text("created_at DESC"), sa.text("id DESC")],
        **idx,
    )
    op.create_index(
        "ix_products_live_category_newest",
        "products",
        ["category_id", sa.text("created_at DESC"), sa.text("id DESC")],
        **idx,
    )
    op.create_index("ix_products_live_price", "products", ["price", "id"], **idx)
    op.create_index(
        "ix_products_live_category_price", "products", ["category_id", "price", "id"], **idx
    )
    op.create_index("ix_products_live_name", "products", ["name", "id"], **idx)
    op.create_index(
        "ix_products_live_category_name", "products", ["category_id", "name", "id"], **idx
    )
    op.create_index("ix_products_live_brand", "products", ["brand"], **idx)
    op.create_index(
        "ix_products_live_search", "products", ["search_vector"], postgresql_using="gin", **idx
    )
    op.create_index(
        "ix_products_gtin",
        "products",
        ["gtin"],
        schema="catalog",
        postgresql_where=sa.text("gtin IS NOT NULL"),
    )
    op.create_index("ix_products_category_id", "products", ["category_id"], schema="catalog")


def downgrade() -> None:
    op.drop_table("products", schema="catalog")
    op.drop_table("categories", schema="catalog")
    op.execute("DROP SCHEMA IF EXISTS catalog")
