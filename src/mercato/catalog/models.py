"""The catalog's tables, in the `catalog` schema. This is the source Alembic compares with.

Queries live in `repository.py` as plain parameterised SQL; these definitions exist for the
migrations and for the test that models and migrations never drift. Each index names the
query it serves (see docs/schema.md for the full index specification).
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    Computed,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR, UUID
from sqlalchemy.types import Boolean

from mercato.core.tables import schema_metadata

SCHEMA = "catalog"
metadata = schema_metadata(SCHEMA)

# Rows a shopper can see. Every partial index below uses exactly this predicate, and so must
# every public query, or the planner cannot use them.
LIVE = text("deleted_at IS NULL AND is_active")

# Weighted document for full-text search: name first, then brand and sku, then description.
SEARCH_DOCUMENT = (
    "setweight(to_tsvector('english'::regconfig, coalesce(name, '')), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, coalesce(brand, '') || ' ' || sku), 'B') || "
    "setweight(to_tsvector('english'::regconfig, coalesce(description, '')), 'C')"
)


def _timestamps() -> list[Column[object]]:
    # clock_timestamp(), not now(): rows written by one transaction (an import batch) still
    # get distinct, ordered times, so "newest first" is the order of creation.
    return [
        Column(
            "created_at",
            DateTime(timezone=True),
            nullable=False,
            server_default=func.clock_timestamp(),
        ),
        Column(
            "updated_at",
            DateTime(timezone=True),
            nullable=False,
            server_default=func.clock_timestamp(),
        ),
    ]


categories = Table(
    "categories",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()),
    Column("parent_id", UUID(as_uuid=True), ForeignKey("catalog.categories.id"), nullable=True),
    Column("name", String(120), nullable=False),
    Column("slug", String(120), nullable=False),
    # Materialised path of ids, "/<root id>/<child id>/": a category and all its
    # descendants are one prefix range on the path index.
    Column("path", Text, nullable=False),
    Column("depth", SmallInteger, nullable=False),
    Column("description", Text, nullable=True),
    Column("version", Integer, nullable=False, server_default=text("1")),
    *_timestamps(),
    UniqueConstraint("parent_id", "slug", postgresql_nulls_not_distinct=True),
    CheckConstraint("depth >= 0", name="depth_non_negative"),
    Index("ix_categories_path", "path", postgresql_ops={"path": "text_pattern_ops"}, unique=True),
)

products = Table(
    "products",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid()),
    Column("sku", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=True),
    Column("brand", String(100), nullable=True),
    Column("gtin", String(14), nullable=True),
    Column("price", Numeric(12, 2), nullable=False),
    Column("currency", String(3), nullable=False, server_default=text("'USD'")),
    Column(
        "category_id",
        UUID(as_uuid=True),
        ForeignKey("catalog.categories.id", ondelete="RESTRICT"),
        nullable=True,
    ),
    Column("inventory_count", Integer, nullable=False, server_default=text("0")),
    Column("attributes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("is_active", Boolean, nullable=False, server_default=text("true")),
    Column("search_vector", TSVECTOR, Computed(SEARCH_DOCUMENT, persisted=True), nullable=True),
    Column("version", Integer, nullable=False, server_default=text("1")),
    *_timestamps(),
    Column("deleted_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("price >= 0", name="price_non_negative"),
    CheckConstraint("inventory_count >= 0", name="inventory_non_negative"),
    CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso_4217"),
    CheckConstraint("gtin ~ '^[0-9]{8,14}$'", name="gtin_digits"),
    # Newest-first listing of the whole catalog (the default sort).
    Index(
        "ix_products_live_newest", text("created_at DESC"), text("id DESC"), postgresql_where=LIVE
    ),
    # Category pages, newest first: walked once per category of the subtree, then merged.
    Index(
        "ix_products_live_category_newest",
        "category_id",
        text("created_at DESC"),
        text("id DESC"),
        postgresql_where=LIVE,
    ),
    # Price sort, whole catalog and per category.
    Index("ix_products_live_price", "price", "id", postgresql_where=LIVE),
    Index("ix_products_live_category_price", "category_id", "price", "id", postgresql_where=LIVE),
    # Name sort, whole catalog and per category.
    Index("ix_products_live_name", "name", "id", postgresql_where=LIVE),
    Index("ix_products_live_category_name", "category_id", "name", "id", postgresql_where=LIVE),
    # Brand filter.
    Index("ix_products_live_brand", "brand", postgresql_where=LIVE),
    # Full-text search over live products.
    Index(
        "ix_products_live_search",
        "search_vector",
        postgresql_using="gin",
        postgresql_where=LIVE,
    ),
    # Lookup by barcode (import matching, admin search).
    Index("ix_products_gtin", "gtin", postgresql_where=text("gtin IS NOT NULL")),
    # Every row of a category, deleted ones too: the foreign key's RESTRICT check on
    # category delete, and moving a category's products elsewhere.
    Index("ix_products_category_id", "category_id"),
)

RESERVATION_STATUSES = ("reserved", "confirmed", "released")

# Stock held for a caller over HTTP (the order service), keyed by an id the caller chose (the
# order's id), so that a retried request finds the reservation its first try made. `lines`
# holds what was reserved, prices included, so a repeat gets the same answer. `reserved` ones
# carry a deadline: the sweep releases them if the caller never confirms (it crashed between
# reserving and recording its order). `confirmed` ones are the caller's until it releases
# them. A release of an id never reserved leaves a `released` row with no lines, so a reserve
# that arrives late (after its caller gave up) is refused instead of holding stock.
stock_reservations = Table(
    "stock_reservations",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("status", Text, nullable=False),
    Column("lines", JSONB, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    *_timestamps(),
    CheckConstraint(
        "status IN (" + ", ".join(f"'{s}'" for s in RESERVATION_STATUSES) + ")",
        name="status_known",
    ),
    CheckConstraint(
        "(status = 'reserved') = (expires_at IS NOT NULL)", name="deadline_while_reserved"
    ),
    # The sweep's queue: unconfirmed reservations by deadline (FOR UPDATE SKIP LOCKED).
    Index(
        "ix_stock_reservations_expires_at_reserved",
        "expires_at",
        postgresql_where=text("status = 'reserved'"),
    ),
    # Pruning released reservations by age (the sweep, hourly at most).
    Index(
        "ix_stock_reservations_updated_at_released",
        "updated_at",
        postgresql_where=text("status = 'released'"),
    ),
)
