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
    PrimaryKeyConstraint,
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

from mercato.core.tables import schema_metadata, serves

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
    Column("id", UUID(as_uuid=True), server_default=func.gen_random_uuid()),
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
    UniqueConstraint(
        "parent_id",
        "slug",
        postgresql_nulls_not_distinct=True,
        info=serves(
            "sibling-slug uniqueness; `has_children` (`WHERE parent_id = $1`) and the "
            "`parent_id` foreign key's check when a category is deleted, via its leading "
            "column"
        ),
    ),
    CheckConstraint("depth >= 0", name="depth_non_negative"),
    Index(
        "ix_categories_path",
        "path",
        postgresql_ops={"path": "text_pattern_ops"},
        unique=True,
        info=serves(
            "subtree selection `path LIKE '<path>%'` as one index range: the outer side "
            "of the category-page query, `move_descendants`, the depth check when moving "
            "(`deepest_depth_within`: `max(depth) … WHERE path LIKE …`); "
            "`list_categories` (`ORDER BY path`); uniqueness of paths"
        ),
    ),
    PrimaryKeyConstraint(
        "id",
        info=serves(
            "`get_category`, `lock_category` (`… FOR UPDATE`), the category lookup in "
            "`resolve_filters`, FK checks from `products.category_id` and "
            "`categories.parent_id` (inserting or updating a referencing row)"
        ),
    ),
)

products = Table(
    "products",
    metadata,
    Column("id", UUID(as_uuid=True), server_default=func.gen_random_uuid()),
    Column("sku", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=True),
    Column("brand", String(100), nullable=True),
    Column("gtin", String(14), nullable=True),
    # Manufacturer part number: with the brand, identifies a product across suppliers.
    Column("mpn", String(64), nullable=True),
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
        "ix_products_live_newest",
        text("created_at DESC"),
        text("id DESC"),
        postgresql_where=LIVE,
        info=serves(
            "`GET /products` without category or `q`, `sort=newest` (the default): keyset"
            " on `(created_at, id)`"
        ),
    ),
    # Category pages, newest first: walked once per category of the subtree, then merged.
    Index(
        "ix_products_live_category_newest",
        "category_id",
        text("created_at DESC"),
        text("id DESC"),
        postgresql_where=LIVE,
        info=serves(
            "category pages, `sort=newest`: the inner side of the lateral merge (one walk"
            " per category of the subtree); also the `category_id IN (…)` form"
        ),
    ),
    # Price sort, whole catalog and per category.
    Index(
        "ix_products_live_price",
        "price",
        "id",
        postgresql_where=LIVE,
        info=serves("whole-catalog `sort=price_asc` (forward) and `price_desc` (backward scan)"),
    ),
    Index(
        "ix_products_live_category_price",
        "category_id",
        "price",
        "id",
        postgresql_where=LIVE,
        info=serves("category pages sorted by price (lateral merge, inner side)"),
    ),
    # Name sort, whole catalog and per category.
    Index(
        "ix_products_live_name",
        "name",
        "id",
        postgresql_where=LIVE,
        info=serves("whole-catalog `sort=name_asc` / `name_desc`"),
    ),
    Index(
        "ix_products_live_category_name",
        "category_id",
        "name",
        "id",
        postgresql_where=LIVE,
        info=serves("category pages sorted by name (lateral merge, inner side)"),
    ),
    # Brand filter.
    Index(
        "ix_products_live_brand",
        "brand",
        postgresql_where=LIVE,
        info=serves(
            "`brand=` filter, when the brand is selective enough; otherwise the planner "
            "walks the sort index and filters (on the 100k demo set, `brand=… "
            "sort=newest` walks `ix_products_live_newest`)"
        ),
    ),
    # Full-text search over live products.
    Index(
        "ix_products_live_search",
        "search_vector",
        postgresql_using="gin",
        postgresql_where=LIVE,
        info=serves("`q=`: `search_vector @@ to_tsquery('english', $q)` (bitmap scan)"),
    ),
    # Lookup by barcode in its GTIN-14 form, so that a UPC-12, an EAN-13 and a GTIN-14 of
    # one item meet.
    Index(
        "ix_products_gtin14",
        text("lpad(gtin, 14, '0')"),
        postgresql_where=text("gtin IS NOT NULL AND deleted_at IS NULL"),
        info=serves(
            "import matching by barcode (ingest/unify.py): "
            "`lpad(p.gtin, 14, '0') = lpad(s.gtin, 14, '0')`, live products"
        ),
    ),
    Index(
        "ix_products_brand_mpn",
        text("lower(brand)"),
        "mpn",
        postgresql_where=text("mpn IS NOT NULL AND deleted_at IS NULL"),
        info=serves(
            "import matching by brand + manufacturer part number (ingest/unify.py): "
            "`lower(p.brand) = lower(s.brand) AND p.mpn = s.mpn`, live products"
        ),
    ),
    # Every row of a category, deleted ones too: the foreign key's RESTRICT check on
    # category delete, and moving a category's products elsewhere.
    Index(
        "ix_products_category_id",
        "category_id",
        info=serves(
            "`DELETE /categories/{id}`: `count_products_in_category` and `move_products` "
            "(`WHERE category_id = $1`, with `?move_products_to=`), and the `ON DELETE "
            "RESTRICT` check of `fk_products_category_id_categories` when the category "
            "row is deleted. The partial `ix_products_live_category_*` indexes cannot "
            "serve these, since deleted and inactive products count"
        ),
    ),
    PrimaryKeyConstraint(
        "id",
        info=serves(
            "`GET /products/{id}` (`get_product`), `lock_product` (`… FOR UPDATE`) before"
            " update, delete, restore; the stock port's conditional decrements and "
            "increments (`UPDATE … WHERE id = $1 [AND … inventory_count >= $2]`, "
            "reserving and releasing for orders); keyset tie-breaker in every sort"
        ),
    ),
    UniqueConstraint(
        "sku",
        info=serves(
            "SKU uniqueness (including soft-deleted rows); lookups by SKU (none in the "
            "API yet; planned for ingest matching)"
        ),
    ),
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
    Column("id", UUID(as_uuid=True), nullable=False),
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
    PrimaryKeyConstraint(
        "id",
        info=serves(
            "reserve's claim (`INSERT … ON CONFLICT (id) DO NOTHING`, a duplicate waiting on "
            "the key), confirm, release (`… FOR UPDATE`), `GET /stock/reservations/{id}`"
        ),
    ),
    Index(
        "ix_stock_reservations_expires_at_reserved",
        "expires_at",
        postgresql_where=text("status = 'reserved'"),
        info=serves(
            "the sweep: `status = 'reserved' AND expires_at < clock_timestamp() "
            "ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED`"
        ),
    ),
    Index(
        "ix_stock_reservations_updated_at_released",
        "updated_at",
        postgresql_where=text("status = 'released'"),
        info=serves("pruning: `status = 'released' AND updated_at < clock_timestamp() - 1 day`"),
    ),
)
